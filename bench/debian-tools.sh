#!/usr/bin/env bash
# Sourced by the benchmark scripts: installs, from Debian's packages, the
# tools they compare Lifeboat with, when this machine lacks them.
#
#   source bench/debian-tools.sh
#   needs_debian_tool rclone        # command rclone, from package rclone
#   needs_debian_tool wrk

needs_debian_tool() { # COMMAND [PACKAGE]
  local command=$1 package=${2:-$1}
  command -v "$command" >/dev/null && return 0
  echo "installing $package (for $command) from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >&2
}
