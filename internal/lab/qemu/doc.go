// Package qemu runs the lab inside a small qemu VM booted from a stock Debian
// kernel, for hosts whose kernel lacks MPLS, VRF, GRE or ESP (or cannot load
// modules). The guest runs the host's own userland: the host's / is shared
// read-only over 9p with a tmpfs overlay on top, so FRR, strongSwan,
// iproute2 and the backbone binary itself run unchanged inside.
//
// Lifetime is state-dir based: Start boots qemu with -daemonize and returns
// once the guest agent answers; later processes call Attach(stateDir) to
// Exec commands and Stop to power the guest off. Files in the state dir:
//
//	qemu.pid       qemu's pidfile (a pid counts only if its command line names this file)
//	vm.json        port, accelerator, kernel, boot timings
//	agent.token    secret the agent requires (0600)
//	console.log    the guest's ttyS0 (kernel log, init and agent messages)
//	qemu.log       qemu's own stderr while starting
//	bin/backbone   the backbone binary for the guest (copied to GuestBinaryPath at boot)
//	initramfs.cpio the generated initramfs
//	agent.ready    written by the guest agent once it listens
//
// # Boot sequence
//
//  1. qemu (TCG, or KVM when it works: Accel "auto" probes it with a short
//     deadline and remembers a failure in the cache dir) boots the kernel
//     directly. An uncompressed vmlinux is extracted once into the kernel
//     cache and booted through its PVH entry point: decompressing the
//     bzImage under TCG costs about 3 s per boot.
//  2. Stage 1, /init of a generated initramfs (static busybox plus the
//     virtio-pci, 9p and overlay modules resolved from modules.dep): mount
//     /proc /sys /dev, insmod, mount the host root (9p tag hostroot,
//     read-only, cache=loose) under a tmpfs overlay, mount tmpfs on /run and
//     /tmp, then the state dir (9p tag state, read-write, uncached) at its
//     host path, bind the cached kernel modules on /lib/modules, move
//     /proc /sys /dev, copy bin/backbone to the guest's /run (exec from
//     tmpfs is faster than paging it over 9p) and switch_root to
//     "/run/backbone-vm/backbone lab-vm-agent --init".
//  3. Stage 2, Go as PID 1 (RunGuest --init): mount /dev/pts, /dev/shm,
//     bpf and cgroup2, set the hostname, load DeviceModules and the lab's modules with
//     finit_module (logging the ones that fail), put lo up and 10.0.2.15/24
//     on the virtio NIC (found by MAC) over netlink, then start the agent
//     as a child and reap orphans forever.
//  4. The agent (package agent) listens on 10.0.2.15:7000 and creates
//     agent.ready; the host, which watches for that file, then pings it.
//
// # Control channel
//
// qemu user networking with restrict=on (the guest reaches nothing outside
// the VM) and a single hostfwd from 127.0.0.1:<free port> to the agent.
// restrict=on does not affect explicit forwards, so no virtio-serial
// multiplexing is needed.
//
// qemu's 9p export of / spans several host filesystems; multidevs=remap
// keeps their inode numbers apart. Without it the guest sees /proc and /sys
// as the same directory and the stage 1 mounts land on top of each other.
package qemu
