// The iOS runner app's side of the file contract with the host
// (device_runners/transports/ios_contract.py): read Documents/request.json,
// run the runner core (llm_runner::RunMain) with its argv, and leave
// result.json, stderr.txt, thermal.json and, last, done in Documents.
#ifndef LITERT_BENCH_RUNNER_APP_H_
#define LITERT_BENCH_RUNNER_APP_H_

namespace runner_app {

// Files in the app's Documents folder, named as ios_contract.py names them
// (tests/test_ios_app.py checks that the two agree).
inline constexpr char kRequestFile[] = "request.json";  // {"id": RUN_ID, "argv": [flags...]}
inline constexpr char kResultFile[] = "result.json";    // the runner's stdout: one JSON document
inline constexpr char kStderrFile[] = "stderr.txt";     // the runner's stderr
inline constexpr char kThermalFile[] = "thermal.json";  // {"before": STATE, "after": STATE}
inline constexpr char kDoneFile[] = "done";             // "CODE RUN_ID\n", written last

// argv[0] of the runner core, as on every other target.
inline constexpr char kProgramName[] = "llm_runner";

// Whether Documents holds a request: the host launched the app, rather than
// someone tapping its icon.
bool HasRequest();

// Runs the request in Documents on the calling thread and writes every
// output file, `done` last; returns the exit code that `done` holds. Paths in
// the request's argv are relative to Documents, the working directory while
// the runner runs.
int RunRequest();

}  // namespace runner_app

#endif  // LITERT_BENCH_RUNNER_APP_H_
