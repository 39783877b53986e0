// The iOS runner app: a UIKit app with one label, which runs the benchmark
// that the host left in Documents/request.json and then exits by itself.
//
// Exiting by itself is this app's job: it is a benchmark runner that the host
// launches once per run (device_runners/transports/ios.py), not an app a user
// keeps open, and the host waits for it to finish (the `done` file). It exits
// with exit(0) whatever the runner's exit code; the code travels in `done`.
//
// The benchmark runs on its own thread, started from
// application:didFinishLaunchingWithOptions:, which returns at once: iOS kills
// an app whose main thread is blocked for ~20 s at launch (the watchdog), and
// a run takes minutes.
#import <UIKit/UIKit.h>

#include <pthread.h>
#include <pthread/qos.h>

#include <cstdlib>

#import "RunnerApp.h"

namespace {

// A secondary thread gets 512 KiB of stack by default; the benchmark thread
// gets what a command-line program's main thread has on Linux.
constexpr size_t kBenchmarkStackBytes = size_t{8} << 20;

NSString* const kTitle = @"LiteRT Bench runner";

void* BenchmarkThread(void*) {
  // The highest QoS an app can ask for: iOS lets no app pin threads to cores
  // (no sched_setaffinity), so QoS is what keeps the run on performance cores
  // when the scheduler allows.
  pthread_set_qos_class_self_np(QOS_CLASS_USER_INTERACTIVE, 0);
  runner_app::RunRequest();
  // Every output is written and `done` is in place. exit() runs the C++ and
  // Objective-C teardown, so it runs on the main thread, which owns UIKit.
  dispatch_async(dispatch_get_main_queue(), ^{
    std::exit(0);
  });
  return nullptr;
}

bool StartBenchmarkThread() {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  pthread_attr_setstacksize(&attr, kBenchmarkStackBytes);
  pthread_attr_set_qos_class_np(&attr, QOS_CLASS_USER_INTERACTIVE, 0);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  const bool started =
      pthread_create(&thread, &attr, BenchmarkThread, nullptr) == 0;
  pthread_attr_destroy(&attr);
  return started;
}

}  // namespace

@interface RunnerAppDelegate : UIResponder <UIApplicationDelegate>
@end

@interface RunnerSceneDelegate : UIResponder <UIWindowSceneDelegate>
@property(nonatomic, strong) UIWindow* window;
@end

@implementation RunnerAppDelegate

- (BOOL)application:(UIApplication*)application
    didFinishLaunchingWithOptions:(NSDictionary*)launchOptions {
  if (!runner_app::HasRequest()) return YES;  // opened by hand: just the label
  // A screen that locks mid-run sends the app to the background, where iOS
  // suspends it: keep the device awake while the benchmark runs.
  application.idleTimerDisabled = YES;
  if (!StartBenchmarkThread()) {
    // No thread of our own: a GCD queue at the same QoS (smaller stack).
    dispatch_async(dispatch_get_global_queue(QOS_CLASS_USER_INTERACTIVE, 0), ^{
      BenchmarkThread(nullptr);
    });
  }
  return YES;
}

@end

// Info.plist's UIApplicationSceneManifest names this class for the app's one
// window scene.

@implementation RunnerSceneDelegate

- (void)scene:(UIScene*)scene
    willConnectToSession:(UISceneSession*)session
                 options:(UISceneConnectionOptions*)connectionOptions {
  if (![scene isKindOfClass:UIWindowScene.class]) return;
  UILabel* label = [[UILabel alloc] init];
  label.numberOfLines = 0;
  label.textAlignment = NSTextAlignmentCenter;
  label.backgroundColor = UIColor.systemBackgroundColor;
  label.textColor = UIColor.labelColor;
  label.text =
      runner_app::HasRequest()
          ? [kTitle stringByAppendingString:
                        @"\n\nRunning the benchmark the host requested."
                        @"\nThe app closes itself when it is done."]
          : [kTitle stringByAppendingString:
                        @"\n\nNo request.json in Documents. The benchmark "
                        @"harness launches this app with one "
                        @"(device_runners/native/ios/README.md)."];
  UIViewController* controller = [[UIViewController alloc] init];
  controller.view = label;
  self.window = [[UIWindow alloc] initWithWindowScene:(UIWindowScene*)scene];
  self.window.rootViewController = controller;
  [self.window makeKeyAndVisible];
}

@end

int main(int argc, char* argv[]) {
  NSString* delegate_class;
  @autoreleasepool {
    delegate_class = NSStringFromClass(RunnerAppDelegate.class);
  }
  return UIApplicationMain(argc, argv, nil, delegate_class);
}
