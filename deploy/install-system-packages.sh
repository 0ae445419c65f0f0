#!/usr/bin/env bash
# Installs the system tools of deploy/system-packages.txt that one use needs, when they are missing.
#
#   deploy/install-system-packages.sh --for demo|test|image|assets   install what is missing (apt-get, as root)
#   deploy/install-system-packages.sh --for test --list              print the packages of that use, one a line
#   deploy/install-system-packages.sh --for test --missing           print the missing ones (exit 1 if any)
#
# As root it runs `apt-get update` and `apt-get install` for the missing packages only (a package is
# present when `dpkg -s` knows it, or when the list's "present when" test succeeds). As any other user it
# names the missing packages and the command to install them, and exits with status 1: it never asks
# for a password. MICROFAIR_SYSTEM_PACKAGES names another list (the tests use it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
list="${MICROFAIR_SYSTEM_PACKAGES:-$here/system-packages.txt}"
use="" mode=install
while [ $# -gt 0 ]; do
  case "$1" in
    --for) use="${2:-}"; shift 2 ;;
    --for=*) use="${1#--for=}"; shift ;;
    --list) mode=list; shift ;;
    --missing) mode=missing; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-system-packages: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$use" in
  demo|test|image|assets) ;;
  *) echo "install-system-packages: --for demo|test|image|assets is required" >&2; exit 2 ;;
esac
[ -f "$list" ] || { echo "install-system-packages: no package list at $list" >&2; exit 2; }

packages=() missing=()
while read -r pkg uses check; do
  case "$pkg" in ''|'#'*) continue ;; esac
  [[ ",$uses," == *",$use,"* ]] || continue
  packages+=("$pkg")
  if [ -n "${check:-}" ]; then
    (eval "$check") >/dev/null 2>&1 && continue
  fi
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done < "$list"

if [ "$mode" = list ]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi
if [ "$mode" = missing ]; then
  [ ${#missing[@]} -eq 0 ] || printf '%s\n' "${missing[@]}"
  [ ${#missing[@]} -eq 0 ]
  exit
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "system tools for $use: all present (${packages[*]})"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  {
    echo "microfair: $use needs system packages that are not installed: ${missing[*]}"
    echo "Install them as root, then run the command again:"
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
  } >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "microfair: $use needs ${missing[*]}, and this system has no apt-get: install them with its package manager" >&2
  exit 1
fi
echo "system tools for $use: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
