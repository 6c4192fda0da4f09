"""The `ccq` commands as library functions: for each, an options dataclass (what the command line was asked) and
a function that does the work (`run_phantom`, `run_prepare`, `run_train`, `run_evaluate`; `ccq predict`'s are
`ccq.inference.runner.PredictOptions` / `run_predict`, `ccq demo`'s `ccq.demo.DemoOptions` / `run_demo`).

`ccq.cli` only parses arguments into these options and calls the function; `ccq demo` calls the functions
directly and prints the equivalent command lines (`ccq.utils.command_line`). Modules here import the heavy parts
(torch, the data pipeline) inside the functions, so that `ccq --help` stays fast.
"""
