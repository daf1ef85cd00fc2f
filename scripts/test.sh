#!/usr/bin/env bash
# Runs every check and test of Lifeboat on this machine: formatting, clippy,
# checkov over infra/ (every finding fixed or skipped in place with its
# reason), then the whole test suite with the four Google Cloud emulators running.
# Installs what is missing first (see scripts/emulators.sh) and stops every
# process it started, whether the tests pass or fail.
#
#   scripts/test.sh                # everything
#   scripts/test.sh -p lifeboat-shared storage   # extra arguments go to cargo test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/emulators.sh
trap emulators_stop EXIT
trap 'exit 130' INT TERM

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== starting the emulators"
emulators_start
# After emulators_start, which installs checkov into the venv. Offline:
# --skip-download keeps it from fetching Prisma Cloud's guidelines.
echo "== checkov infra/"
"$EMULATORS_VENV/bin/checkov" --directory infra --framework terraform --compact --quiet --skip-download
# Headless Chromium renders the drill reports in their browser test.
[ -x /usr/bin/chromium ] || needs_debian_package chromium
echo "== cargo test"
if [ $# -eq 0 ]; then
  cargo test --workspace --locked
else
  cargo test --locked "$@"
fi
