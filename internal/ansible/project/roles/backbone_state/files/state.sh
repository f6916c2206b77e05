#!/bin/sh
# What a backbone router has now, as JSON, in one round trip: each file's
# checksum, mode and owner; the packages missing; whether FRR and
# strongSwan are enabled and running. Arguments: file paths, and pkg:NAME.
set -u
printf '{"files": {'
sep=
for f in "$@"; do
	case $f in pkg:*) continue ;; esac
	[ -e "$f" ] || continue
	printf '%s"%s": "%s %s"' "$sep" "$f" "$(sha256sum <"$f" | cut -d' ' -f1)" "$(stat -c %a:%U:%G "$f")"
	sep=', '
done
printf '}, "missing": ['
sep=
for f in "$@"; do
	case $f in pkg:*) p=${f#pkg:} ;; *) continue ;; esac
	if command -v dpkg-query >/dev/null 2>&1; then
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' && continue
	else
		rpm -q "$p" >/dev/null 2>&1 && continue
	fi
	printf '%s"%s"' "$sep" "$p"
	sep=', '
done
printf '], "running": {'
sep=
for s in frr strongswan; do
	on=false
	systemctl -q is-active "$s" 2>/dev/null && systemctl -q is-enabled "$s" 2>/dev/null && on=true
	printf '%s"%s": %s' "$sep" "$s" "$on"
	sep=', '
done
printf '}}\n'
