// One benchmark run through files in Documents (RunnerApp.h). The runner core
// is the same C++ as the command-line runner's (../src); only the way in
// (request.json instead of a command line) and the way out (files instead of
// pipes) differ.
#import "RunnerApp.h"

#import <Foundation/Foundation.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "run_main.h"

namespace runner_app {
namespace {

// llm_runner's exit codes (engine.h's ExitCode) for what fails before it runs.
constexpr int kExitUsage = 2;
constexpr int kExitRuntime = 4;

NSString* Documents() {
  return NSSearchPathForDirectoriesInDomains(NSDocumentDirectory,
                                             NSUserDomainMask, YES)
      .firstObject;
}

NSString* InDocuments(const char* name) {
  return [Documents() stringByAppendingPathComponent:@(name)];
}

std::string Utf8(NSString* text) {
  const char* utf8 = text.UTF8String;
  return utf8 != nullptr ? utf8 : "";
}

// CFBundleExecutable, which names the app in messages (as ios_contract's
// EXECUTABLE names its crash reports).
std::string ExecutableName() {
  NSString* name = [NSBundle.mainBundle objectForInfoDictionaryKey:@"CFBundleExecutable"];
  return name != nil ? Utf8(name) : "LiteRTBenchRunner";
}

// ProcessInfo.thermalState, spelled as the host reads it.
const char* ThermalStateName() {
  switch (NSProcessInfo.processInfo.thermalState) {
    case NSProcessInfoThermalStateNominal:
      return "nominal";
    case NSProcessInfoThermalStateFair:
      return "fair";
    case NSProcessInfoThermalStateSerious:
      return "serious";
    case NSProcessInfoThermalStateCritical:
      return "critical";
  }
  return "unknown";
}

// Whole or absent: written to a temporary file and renamed into place, since
// the host polls for `done` and reads it as soon as it appears.
bool WriteWhole(const char* name, const std::string& text) {
  NSData* data = [NSData dataWithBytes:text.data() length:text.size()];
  return [data writeToFile:InDocuments(name)
                   options:NSDataWritingAtomic
                     error:nullptr];
}

struct Request {
  std::string run_id;             // the id `done` repeats; "" if unreadable
  std::vector<std::string> argv;  // the runner's flags, without a program name
  std::string error;              // why the request is unusable; "" if it is not
};

// Documents/request.json: {"id": RUN_ID, "argv": ["--model", ...]}. Strict
// like the host's fake app (device_runners/fake_ios/app.py): argv must be a
// list of strings.
Request ReadRequest() {
  Request request;
  NSError* error = nil;
  NSData* data = [NSData dataWithContentsOfFile:InDocuments(kRequestFile)
                                        options:0
                                          error:&error];
  if (data == nil) {
    request.error = Utf8(error.localizedDescription);
    return request;
  }
  id json = [NSJSONSerialization JSONObjectWithData:data options:0 error:&error];
  if (![json isKindOfClass:NSDictionary.class]) {
    request.error = json == nil ? "not JSON: " + Utf8(error.localizedDescription)
                                : "not a JSON object";
    return request;
  }
  NSDictionary* object = json;
  id run_id = [object objectForKey:@"id"];
  if ([run_id isKindOfClass:NSString.class]) {
    request.run_id = Utf8(run_id);
  } else if ([run_id isKindOfClass:NSNumber.class]) {
    request.run_id = Utf8([run_id stringValue]);
  } else {
    request.error = "no \"id\"";
    return request;
  }
  id argv = [object objectForKey:@"argv"];
  if (![argv isKindOfClass:NSArray.class]) {
    request.error = "\"argv\" is not a list of strings";
    return request;
  }
  for (id item in (NSArray*)argv) {
    if (![item isKindOfClass:NSString.class]) {
      request.error = "\"argv\" is not a list of strings";
      request.argv.clear();
      return request;
    }
    request.argv.push_back(Utf8(item));
  }
  return request;
}

// stdout or stderr into a file in Documents, truncated.
bool Redirect(FILE* stream, const char* name) {
  return std::freopen(InDocuments(name).fileSystemRepresentation, "w",
                      stream) != nullptr;
}

// The runner core with the request's flags, program name first.
int RunRunner(const std::vector<std::string>& flags) {
  std::vector<std::string> args = {kProgramName};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  try {
    return llm_runner::RunMain(static_cast<int>(args.size()), argv.data());
  } catch (const std::exception& e) {  // RunMain catches these; a backstop
    std::fprintf(stderr, "error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "error: unknown exception\n");
  }
  return kExitRuntime;
}

void FlushToDisk(FILE* stream) {
  std::fflush(stream);
  fsync(fileno(stream));
}

}  // namespace

bool HasRequest() {
  return [NSFileManager.defaultManager
      fileExistsAtPath:InDocuments(kRequestFile)];
}

int RunRequest() {
  @autoreleasepool {
    // What a run before this one left (the host removes them too): a crash
    // from here on leaves no `done`, which is how the host tells it apart.
    for (const char* name : {kDoneFile, kResultFile, kStderrFile, kThermalFile}) {
      unlink(InDocuments(name).fileSystemRepresentation);
    }
    const std::string thermal_before = ThermalStateName();
    const Request request = ReadRequest();
    const bool in_documents = chdir(Documents().fileSystemRepresentation) == 0;
    const int chdir_errno = errno;

    int code = kExitRuntime;
    // stderr first, so that a failure to redirect stdout can be reported.
    if (Redirect(stderr, kStderrFile) && Redirect(stdout, kResultFile)) {
      if (!in_documents) {
        std::fprintf(stderr, "%s: cannot enter Documents: %s\n",
                     ExecutableName().c_str(), std::strerror(chdir_errno));
      } else if (!request.error.empty()) {
        std::fprintf(stderr, "%s: cannot read %s: %s\n",
                     ExecutableName().c_str(), kRequestFile,
                     request.error.c_str());
        code = kExitUsage;
      } else {
        code = RunRunner(request.argv);
      }
    }
    FlushToDisk(stdout);
    FlushToDisk(stderr);

    const std::string thermal_after = ThermalStateName();
    WriteWhole(kThermalFile, "{\"before\": \"" + thermal_before +
                                 "\", \"after\": \"" + thermal_after + "\"}\n");
    // Last: the host reads result.json and stderr.txt once `done` exists.
    // The same text as ios_contract.done_text(code, run_id).
    WriteWhole(kDoneFile, std::to_string(code) + " " + request.run_id + "\n");
    return code;
  }
}

}  // namespace runner_app
