"""Training jobs: the record and its states (`record`), where jobs are kept (`store`, with the
embedded SQLite store in `sqlite`), the scheduler in each worker (`runner`) and the process that
trains one job (`child`)."""
