#!/usr/bin/env bash
# Builds the iOS runner app on a Mac with Xcode, signed for development with your team:
#
#   DEVELOPMENT_TEAM=XXXXXXXXXX ./build.sh       →  build/LiteRTBenchRunner.ipa
#
# Needs Xcode (with its command-line tools selected), XcodeGen, bazelisk and python3 >= 3.10:
# brew install xcodegen bazelisk python@3.11. INCREASED_MEMORY_LIMIT=1 also signs in
# LiteRTBenchRunner.entitlements (a higher jetsam limit and a larger address space, for big models); your App ID
# must be allowed those (README.md). TFLITE_FRAMEWORK=PATH links a TensorFlowLiteC.framework built elsewhere.
#
# Steps: build_tflite.sh (the TFLite C API from LiteRT's source → build/tflite/TensorFlowLiteC.framework, once),
# xcodegen generate (project.yml → LiteRTBenchRunner.xcodeproj), xcodebuild archive, xcodebuild -exportArchive
# (ExportOptions.plist, development). Written for macOS's own bash 3.2 as well as newer ones.
set -euo pipefail

cd "$(dirname "$0")"

APP=LiteRTBenchRunner
BUILD=build
ARCHIVE="$BUILD/$APP.xcarchive"
IPA="$BUILD/$APP.ipa"

die() {
  echo "build.sh: $*" >&2
  exit 1
}

[[ "$(uname -s)" == Darwin ]] || die "this builds an iOS app: it needs macOS with Xcode, not $(uname -s)"
[[ "${DEVELOPMENT_TEAM:-}" =~ ^[A-Z0-9]{10}$ ]] ||
  die "set DEVELOPMENT_TEAM to your 10-character Apple team id (Xcode > Settings > Accounts, or" \
      "developer.apple.com > Membership): DEVELOPMENT_TEAM=XXXXXXXXXX ./build.sh"
command -v xcodebuild >/dev/null 2>&1 ||
  die "xcodebuild not found: install Xcode, then sudo xcode-select -s /Applications/Xcode.app"
command -v xcodegen >/dev/null 2>&1 || die "xcodegen not found: brew install xcodegen"
export DEVELOPMENT_TEAM

signing=(DEVELOPMENT_TEAM="$DEVELOPMENT_TEAM" CODE_SIGN_STYLE=Automatic)
if [[ "${INCREASED_MEMORY_LIMIT:-0}" == 1 ]]; then
  signing+=(CODE_SIGN_ENTITLEMENTS="$APP.entitlements")
fi

rm -rf "$ARCHIVE" "$BUILD/export" "$BUILD/Payload" "$IPA"
mkdir -p "$BUILD"

./build_tflite.sh

echo "==> xcodegen generate"
xcodegen generate --spec project.yml

echo "==> xcodebuild archive ($ARCHIVE)"
xcodebuild archive \
  -project "$APP.xcodeproj" \
  -scheme "$APP" \
  -configuration Release \
  -sdk iphoneos \
  -destination "generic/platform=iOS" \
  -archivePath "$ARCHIVE" \
  -allowProvisioningUpdates \
  "${signing[@]}"

echo "==> xcodebuild -exportArchive ($IPA)"
cp ExportOptions.plist "$BUILD/ExportOptions.plist"
plutil -replace teamID -string "$DEVELOPMENT_TEAM" "$BUILD/ExportOptions.plist"
if xcodebuild -exportArchive \
  -archivePath "$ARCHIVE" \
  -exportOptionsPlist "$BUILD/ExportOptions.plist" \
  -exportPath "$BUILD/export" \
  -allowProvisioningUpdates; then
  mv "$BUILD/export/$APP.ipa" "$IPA"
else
  # The archive's app is already signed for development (archive signs with the team's Apple Development
  # identity and profile): an .ipa is that app in Payload/, zipped.
  echo "build.sh: -exportArchive failed (above); packaging the archive's development-signed app instead" >&2
  mkdir -p "$BUILD/Payload"
  cp -R "$ARCHIVE/Products/Applications/$APP.app" "$BUILD/Payload/"
  (cd "$BUILD" && /usr/bin/zip -qry "$APP.ipa" Payload)
  rm -rf "$BUILD/Payload"
fi

bundle_id=$(/usr/libexec/PlistBuddy -c "Print :CFBundleIdentifier" \
  "$ARCHIVE/Products/Applications/$APP.app/Info.plist")
echo "==> $PWD/$IPA ($bundle_id)"
echo "    run it: pytest suites/ --device iphone15pro --runner-app device_runners/native/ios/$IPA"
