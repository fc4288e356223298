# Sourced by scripts/test.sh and scripts/sandbox-up.sh: installs the Debian packages named in
# the array `need_apt` (as root, with apt), or names them and exits when not root.
# $1: the calling script's name, for the message.
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "$1: missing packages (run as root to install them): ${need_apt[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
