#!/bin/sh
# Runs a command the way a container with readOnlyRootFilesystem runs it (local_pods.py --read-only-root):
# the whole root read-only, the pod's volume folders writable at their mount paths, no capabilities. Linux
# only; start it in a mount namespace of its own, where it needs to be root:
#
#   unshare --mount read_only_root.sh NEWROOT PATH=FOLDER... [--keep PATH]... -- COMMAND...
#
# NEWROOT is an empty folder; --keep binds a folder back, read-only, where a volume hides it (this machine's
# venv or checkout may lie under /work, a pod's work folder).
set -eu
chroot="$(PATH="$PATH:/usr/sbin:/sbin" command -v chroot)"  # not on the pod's PATH, which the command keeps
root="$1"
shift
mount --rbind / "$root"
mount -o remount,bind,ro "$root"
while [ "$1" != "--" ]; do
  if [ "$1" = "--keep" ]; then
    mkdir -p "$root$2" && mount --rbind "$2" "$root$2" && mount -o remount,bind,ro "$root$2"
    shift 2
    continue
  fi
  path="${1%%=*}" folder="${1#*=}"
  if [ ! -d "$root$path" ]; then  # e.g. the image's home folder, which this machine lacks
    mount -t tmpfs -o mode=755 none "$root$(dirname "$path")" && mkdir -p "$root$path"
  fi
  mount --bind "$folder" "$root$path"
  shift
done
shift
# The pod's working directory is its home folder (the images' WORKDIR); root without capabilities still owns
# root's files here (the interpreter may live under /root), but cannot write a read-only mount.
exec "$chroot" "$root" env --chdir="${HOME:-/}" setpriv --bounding-set=-all --inh-caps=-all "$@"
