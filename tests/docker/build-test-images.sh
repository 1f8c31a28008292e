#!/usr/bin/env bash
# Builds the images the Docker suites use, locally: nothing can be pulled here.
# esm-test/busybox:latest is a static busybox with a few applets and /www/index.html,
# so `httpd -f -p 8080 -h /www` serves a page that proves a published port answers.
set -euo pipefail

if [ ! -x /bin/busybox ]; then
  echo "needs busybox-static: apt-get install -y busybox-static" >&2
  exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc" "$root/data"
cp /bin/busybox "$root/bin/busybox"
for applet in sh httpd cat echo sleep ls true false env id printenv wget touch mkdir test; do
  ln -s busybox "$root/bin/$applet"
done
echo "hello from esm" > "$root/www/index.html"
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - esm-test/busybox:latest >/dev/null
echo "built esm-test/busybox:latest"
