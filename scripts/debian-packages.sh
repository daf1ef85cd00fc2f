#!/usr/bin/env bash
# Sourced by the test and benchmark scripts: installs a command from Debian's
# packages when this machine lacks it.
#
#   source scripts/debian-packages.sh
#   needs_debian_package rclone                    # command rclone, package rclone
#   needs_debian_package docker-registry || return 1

needs_debian_package() { # COMMAND [PACKAGE]
  local command=$1 package=${2:-$1}
  command -v "$command" >/dev/null && return 0
  echo "installing $package (for $command) from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >&2
}
