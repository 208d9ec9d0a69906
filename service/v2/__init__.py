"""The Open Inference Protocol ("V2", REST): the protocol of Triton, KServe, MLServer and Seldon.

One more transport around the one prediction pipeline (`service.predicting`): `tensors` parses an
inference request (JSON, or JSON plus binary tensor data), `encoding` undoes and applies gzip and
deflate, `answer` renders the pipeline's prediction as a V2 response; `service.routes.v2` serves
them. Errors under ``/v2`` are ``{"error": "<message>"}`` (`service.errors.render_error`), as
V2 clients parse them.
"""
