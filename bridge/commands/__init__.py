"""The CLI's commands, one module per kind of work; bridge.cli parses the arguments and dispatches."""
