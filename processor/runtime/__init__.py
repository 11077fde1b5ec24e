"""The running process: the Faust app (the only Faust import) and the bootstrap of clients."""
