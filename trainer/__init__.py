"""softserve's offline NumPy trainer: softmax and binary logistic regression on 28x28 images."""
