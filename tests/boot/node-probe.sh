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
    echo "containerd version = $(containerd --version 2>/dev/null | awk '{ print $3 }')"
    echo "containerd.service = $(systemctl is-active containerd.service)"
    # SystemdCgroup of the runc runtime, as containerd itself reads its
    # config, and the plugin whose table holds it (config version 2:
    # io.containerd.grpc.v1.cri; version 3: io.containerd.cri.v1.runtime).
    dump=$(containerd config dump 2>/dev/null | awk '
        /^[ \t]*\[/ {
            runc = ($0 ~ /containerd\.runtimes\.runc\.options\]$/)
            if (runc) {
                plugin = $0
                sub(/^[ \t]*\[plugins\./, "", plugin)
                sub(/^./, "", plugin)
                sub(/[^a-zA-Z0-9._-].*$/, "", plugin)
            }
        }
        runc && $1 == "SystemdCgroup" { print $3, plugin }')
    if [ -n "$dump" ]; then
        echo "SystemdCgroup = ${dump%% *}"
        echo "SystemdCgroup plugin = ${dump#* }"
    else
        echo "SystemdCgroup = absent"
    fi
    server=$(ctr version 2>/dev/null | awk '/^Server:/ { s = 1 } s && $1 == "Version:" { print $2; exit }')
    echo "ctr server version = ${server:-none}"
else
    echo "containerd = absent"
fi
if command -v dockerd >/dev/null 2>&1; then
    echo "docker = installed"
    echo "docker.service = $(systemctl is-active docker.service)"
    # What the running daemon reports, not what daemon.json says.
    for field in CgroupDriver CgroupVersion Driver LoggingDriver ServerVersion; do
        value=$(docker info --format "{{.$field}}" 2>/dev/null) || value=
        case $field in
            CgroupDriver) name="docker cgroup driver" ;;
            CgroupVersion) name="docker cgroup version" ;;
            Driver) name="docker storage driver" ;;
            LoggingDriver) name="docker logging driver" ;;
            ServerVersion) name="docker server version" ;;
        esac
        echo "$name = ${value:-none}"
    done
else
    echo "docker = absent"
fi
echo "cgroup fs = $(stat -fc %T /sys/fs/cgroup)"
echo "root mount = $(awk '$2 == "/" { split($4, o, ","); m = o[1] } END { print m }' /proc/mounts)"
failed=$(systemctl list-units --state=failed --no-legend --plain | awk '{ print $1 }' | tr '\n' ' ')
failed=${failed% }
echo "failed units = ${failed:-none}"
echo "uptime = $(cut -d' ' -f1 /proc/uptime) s"
echo "NODE-PROBE-END"
