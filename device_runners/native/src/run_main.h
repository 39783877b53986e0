// The runner as a function: the command-line program (main.cc) and the iOS
// app (ios/, which has no command line and calls it with request.json's
// argv) run the same code through it.
#ifndef LLM_RUNNER_RUN_MAIN_H_
#define LLM_RUNNER_RUN_MAIN_H_

namespace llm_runner {

// Parses argv, runs the benchmark, prints the JSON document on stdout and
// any error on stderr; returns the exit code (0 ok, 2 usage, 3 model file,
// 4 runtime).
int RunMain(int argc, char** argv);

}  // namespace llm_runner

#endif  // LLM_RUNNER_RUN_MAIN_H_
