"""The Taskyard worker daemon: registers with the scheduler, runs what it is assigned."""
