#!/bin/sh
# Boot-test probe: one "name = value" line per fact, between two markers.
echo "NODE-PROBE-BEGIN"
for key in net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward; do
    value=$(sysctl -n "$key" 2>/dev/null) || value=absent
    echo "sysctl $key = $value"
done
for module in overlay br_netfilter; do
    if grep -q "^$module " /proc/modules; then state=loaded; else state=absent; fi
    echo "module $module = $state"
done
if command -v containerd >/dev/null 2>&1; then
    echo "containerd = installed"
    echo "containerd.service = $(systemctl is-active containerd.service)"
    # SystemdCgroup of the runc runtime, as containerd itself reads its config.
    cgroup=$(containerd config dump 2>/dev/null | awk '
        /^[ \t]*\[/ { runc = ($0 ~ /containerd\.runtimes\.runc\.options\]$/) }
        runc && $1 == "SystemdCgroup" { print $3 }')
    echo "SystemdCgroup = ${cgroup:-absent}"
    server=$(ctr version 2>/dev/null | awk '/^Server:/ { s = 1 } s && $1 == "Version:" { print $2; exit }')
    echo "ctr server version = ${server:-none}"
else
    echo "containerd = absent"
fi
echo "cgroup fs = $(stat -fc %T /sys/fs/cgroup)"
echo "root mount = $(awk '$2 == "/" { split($4, o, ","); m = o[1] } END { print m }' /proc/mounts)"
failed=$(systemctl list-units --state=failed --no-legend --plain | awk '{ print $1 }' | tr '\n' ' ')
failed=${failed% }
echo "failed units = ${failed:-none}"
echo "uptime = $(cut -d' ' -f1 /proc/uptime) s"
echo "NODE-PROBE-END"
