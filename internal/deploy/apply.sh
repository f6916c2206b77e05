#!/bin/sh
# backbone's apply program on a deployed router. backbone deploy uploads it
# with every generation; it also runs here on its own, when an armed
# rollback fires after the operator lost the router.
#
#   apply.sh check N      validate generation N's files with the router's own tools
#   apply.sh switch N     make generation N the running one: install what differs,
#                         reload what changed, restart nothing that can reload
#   apply.sh rollback N   the same, for a rollback (logged as such)
#   apply.sh snapshot N   record, in generation 0, how the paths generation N
#                         manages were before backbone first touched them
#
# A generation's manifest has one line per file:
#   ORDER APPLY MODE OWNER SHA256 PATH DEVICE
# (SHA256 "-" in generation 0: the path did not exist.)
set -eu
umask 022
ROOT=/var/lib/backbone
GEN=$ROOT/generations

die() { echo "backbone apply: $*" >&2; exit 1; }
log() { echo "backbone apply: $*"; }

sum() { if [ -e "$1" ]; then sha256sum <"$1" | cut -d' ' -f1; else echo -; fi; }

# desired PATH: the manifest line for PATH in generation $N, else in
# generation 0 (how it was before backbone), else nothing.
desired() {
	awk -v p="$1" '$6 == p { print; exit }' "$GEN/$N/manifest" 2>/dev/null | grep . ||
		awk -v p="$1" '$6 == p { print; exit }' "$GEN/0/manifest" 2>/dev/null || true
}

check() {
	d=$GEN/$N/files
	[ -f "$GEN/$N/manifest" ] || die "no generation $N on $(hostname)"
	while read -r order apply mode owner sha path device; do
		f=$d$path
		[ "$(sum "$f")" = "$sha" ] || die "$path: the uploaded file is damaged (checksum)"
		case $apply in
		frr) vtysh --dryrun -f "$f" >/dev/null || die "$path: FRR refuses it (vtysh --dryrun -f $f)" ;;
		nm) nmcli --offline connection modify connection.autoconnect yes <"$f" >/dev/null ||
			die "$path: NetworkManager refuses it (nmcli --offline)" ;;
		esac
	done <"$GEN/$N/manifest"
	log "generation $N checks out"
}

snapshot() {
	mkdir -p "$GEN/0/files"
	touch "$GEN/0/manifest"
	while read -r order apply mode owner sha path device; do
		grep -q " $path " "$GEN/0/manifest" && continue
		if [ -e "$path" ]; then
			mkdir -p "$GEN/0/files$(dirname "$path")"
			cp -p "$path" "$GEN/0/files$path"
			echo "$order $apply $(stat -c %a "$path") $(stat -c %U:%G "$path") $(sum "$path") $path $device" >>"$GEN/0/manifest"
		else
			echo "$order $apply 0 - - $path $device" >>"$GEN/0/manifest"
		fi
	done <"$GEN/$N/manifest"
}

# install LINE: make the live file what a manifest line of generation G says.
install_file() {
	g=$1 order=$2 apply=$3 mode=$4 owner=$5 sha=$6 path=$7
	if [ "$sha" = - ]; then
		rm -f "$path"
		return
	fi
	mkdir -p "$(dirname "$path")"
	cp "$GEN/$g/files$path" "$path.bb-new"
	chmod "$mode" "$path.bb-new"
	chown "$owner" "$path.bb-new" 2>/dev/null || true
	mv -f "$path.bb-new" "$path"
}

switch() {
	[ -f "$GEN/$N/manifest" ] || die "no generation $N on $(hostname)"
	cur=$(readlink "$ROOT/current" 2>/dev/null | sed 's|.*/||') || true
	changes=$ROOT/changes.$$
	: >"$changes"
	# Every path the target or the current generation manages.
	{
		cat "$GEN/$N/manifest"
		[ -n "$cur" ] && [ -f "$GEN/$cur/manifest" ] && cat "$GEN/$cur/manifest"
	} | awk '{ print $6 }' | sort -u | while read -r path; do
		line=$(desired "$path")
		[ -n "$line" ] || continue
		g=$N
		awk -v p="$path" '$6 == p { f = 1 } END { exit !f }' "$GEN/$N/manifest" || g=0
		set -- $line
		order=$1 apply=$2 mode=$3 owner=$4 sha=$5 device=${7:--}
		[ "$(sum "$path")" = "$sha" ] && continue
		install_file "$g" "$order" "$apply" "$mode" "$owner" "$sha" "$path"
		echo "$order $apply $path $device" >>"$changes"
		log "installed $path"
	done
	sort -n "$changes" -o "$changes"
	reload "$changes"
	rm -f "$changes"
	ln -sfn "generations/$N" "$ROOT/current.new"
	mv -T "$ROOT/current.new" "$ROOT/current"
	log "generation $N is running"
}

has() { awk -v a="$1" '$2 == a { f = 1 } END { exit !f }' "$2"; }
devices() { awk -v a="$1" '$2 == a && $4 != "-" { print $4 }' "$2"; }

# enable SERVICE: started at boot from now on. SYSTEMCTL_SKIP_SYSV skips
# Debian's update-rc.d for services that also ship an init script (frr):
# it reloads systemd three times, 5-12 s on a small router, for rc.d links
# systemd ignores anyway; --no-reload: the service is started explicitly.
enable() {
	systemctl -q is-enabled "$1" 2>/dev/null ||
		SYSTEMCTL_SKIP_SYSV=1 systemctl enable -q --no-reload "$1" || die "systemctl enable $1 failed"
}

reload() {
	c=$1
	if has modules "$c" && [ -f /etc/modules-load.d/backbone.conf ]; then
		modprobe -a $(grep -v '^#' /etc/modules-load.d/backbone.conf) || die "modprobe failed"
	fi
	if has sysctl "$c" && [ -f /etc/sysctl.d/90-backbone.conf ]; then
		sysctl -q -p /etc/sysctl.d/90-backbone.conf || die "sysctl failed"
	fi
	if has guard "$c"; then
		# The IPsec guard before any tunnel changes; a generation without
		# it (a rollback) takes its policies away with the unit.
		systemctl daemon-reload || die "systemctl daemon-reload failed"
		if [ -f /etc/systemd/system/backbone-ipsec-guard.service ]; then
			enable backbone-ipsec-guard.service
			systemctl restart backbone-ipsec-guard.service || die "the IPsec guard did not load (journalctl -u backbone-ipsec-guard)"
		else
			ip xfrm policy deleteall action block priority 3000000 || die "could not remove the IPsec guard policies"
		fi
	fi
	if has nm "$c"; then
		nmcli connection reload || die "nmcli connection reload failed"
		for dev in $(devices nm "$c"); do
			if [ -e "/etc/NetworkManager/system-connections/bb-$dev.nmconnection" ]; then
				nmcli --wait 30 connection up id "$dev" >/dev/null || die "NetworkManager could not activate $dev (journalctl -u NetworkManager)"
			fi
		done
	fi
	if has netdev "$c" || has network "$c"; then
		# networkd does not change a device it created: changed ones are
		# made again.
		for dev in $(devices netdev "$c"); do
			ip link show dev "$dev" >/dev/null 2>&1 && ip link delete dev "$dev"
		done
		networkctl reload || die "networkctl reload failed"
		for dev in $(devices network "$c"); do
			if ip link show dev "$dev" >/dev/null 2>&1; then
				networkctl reconfigure "$dev" || die "networkd could not configure $dev"
			fi
		done
	fi
	if has firewall "$c" && systemctl -q is-active firewalld 2>/dev/null; then
		firewall-cmd -q --reload &&
			firewall-cmd -q --permanent --add-service=backbone &&
			firewall-cmd -q --reload || die "firewalld did not take the backbone service"
	fi
	if has daemons "$c" || ! systemctl -q is-active frr; then
		enable frr
		systemctl restart frr || die "FRR did not start (journalctl -u frr)"
	elif has frr "$c"; then
		systemctl reload frr || die "FRR did not take the new configuration (journalctl -u frr)"
	fi
	if [ -n "$(ls /etc/swanctl/conf.d/backbone.conf /etc/strongswan/swanctl/conf.d/backbone.conf 2>/dev/null)" ]; then
		if has charon "$c" || ! systemctl -q is-active strongswan; then
			enable strongswan
			systemctl restart strongswan || die "strongSwan did not start (journalctl -u strongswan)"
		elif has swanctl "$c"; then
			swanctl --load-all --noprompt >/dev/null || die "swanctl refuses the connections (swanctl --load-all)"
		fi
	fi
}

[ $# -eq 2 ] || die "usage: apply.sh check|switch|rollback|snapshot GENERATION"
N=$2
exec 9>"$ROOT/lock"
flock -w 60 9 || die "another apply runs on $(hostname)"
case $1 in
check) check ;;
snapshot) snapshot ;;
switch) switch ;;
rollback)
	log "rolling back to generation $N"
	switch
	;;
*) die "unknown action $1" ;;
esac
