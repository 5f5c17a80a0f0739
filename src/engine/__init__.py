"""The training engine shared by every model: schedules, optimizers, train
steps, checkpoints, callbacks and the training loop."""
