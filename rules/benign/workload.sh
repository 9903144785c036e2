#!/bin/sh
# The benign workload of the false-positive measurement (rules/README.md,
# "False positives"): what a node and its application containers do on an
# ordinary day. Run by measure.sh, which records it with `mamori capture`
# and replays the recording against the shipped rules; every alert is a
# false positive. $1 is a scratch directory, $2 the cgroup.procs files of a
# fake pod container (space separated) for the container part.
set -u
W=$1
CGROUP_PROCS=$2
mkdir -p "$W" && cd "$W" || exit 1

# ---- host: admin commands, builds, git, archives, a local web server ----
host_part() {
    ps aux > /dev/null; ss -tlnp > /dev/null; ip addr > /dev/null; ip route > /dev/null
    df -h > /dev/null; getent passwd root > /dev/null; id > /dev/null; uname -a > /dev/null; who > /dev/null
    python3 -m http.server 18418 --bind 127.0.0.1 --directory "$W" > /dev/null 2>&1 &
    echo $! > "$W/http.pid"
    git init -q repo && cd repo && git config user.email w@example.invalid && git config user.name w
    printf 'int main(void){return 0;}\n' > hello.c && printf 'hello: hello.c\n\tcc -O2 -o hello hello.c\n' > Makefile
    make -s && ./hello && git add -A && git commit -qm init && git checkout -qb topic
    echo "// change" >> hello.c && git commit -qam change && git checkout -q - && git merge -q topic
    git archive -o ../src.tar.gz HEAD && git gc -q && cd ..
    git clone -q repo clone
    tar czf data.tgz repo && tar tzf data.tgz > /dev/null && mkdir -p x && tar xzf data.tgz -C x
    gzip -kf repo/hello.c && gzip -dc repo/hello.c.gz > /dev/null; xz -k src.tar.gz; zstd -q src.tar.gz -o src.zst
    find "$W" -name '*.c' > /dev/null; grep -rn "main" repo > /dev/null; grep -rIl TODO repo > /dev/null
    ssh-keygen -q -t ed25519 -N '' -f "$W/k" && ssh-keygen -y -f "$W/k" > /dev/null
    cargo new -q --vcs none crate1 && (cd crate1 && cargo build -q 2>/dev/null && cargo test -q > /dev/null 2>&1)
    python3 -m venv venv && ./venv/bin/pip install -q six > /dev/null 2>&1
    apt-get download -q hello > /dev/null 2>&1
    java -version > /dev/null 2>&1; node -e 'console.log(1)' > /dev/null; perl -e 'print 1' > /dev/null
    tail -n 5 /var/log/dpkg.log > /dev/null 2>&1
}

# ---- container: an image's entrypoint, the app starting, probes ----
entrypoint() {
    cat > "$W/docker-entrypoint.sh" <<'EOS'
#!/bin/sh
set -e
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$DATA/conf" && touch "$DATA/conf/app.conf"
    find "$DATA" \! -user root -exec chown root {} + ; chown -R root:root "$DATA"
    grep -q '^root:' /etc/passwd && getent group root > /dev/null
fi
whoami > /dev/null; hostname > /dev/null; uname -m > /dev/null; ip -4 route > /dev/null
ls -la "$DATA" > /dev/null; cat /etc/os-release > /dev/null
for f in "$DATA"/conf/*.conf; do sed -e 's/a/b/' "$f" > /dev/null; done
env | grep -c '^PATH=' > /dev/null
exec "$@"
EOS
    chmod +x "$W/docker-entrypoint.sh"
    DATA="$W/data" "$W/docker-entrypoint.sh" sh -c 'echo started > /dev/null'
}

app_and_probes() {
    # Runtimes starting, as application processes do.
    python3 -c 'import json, ssl, sqlite3, hashlib; print(json.dumps({"ok": 1}))' > /dev/null
    node -e 'require("http"); require("crypto")' ; perl -MPOSIX -e 'print 1' > /dev/null
    java -version > /dev/null 2>&1
    # A start script that checks its environment (not named entrypoint).
    sh -c 'uname -s > /dev/null; id -u > /dev/null; nproc > /dev/null; cat /proc/meminfo > /dev/null'
    # Build-time installs inside the image: a venv and a package.
    python3 -m venv "$W/cvenv" && "$W/cvenv/bin/pip" install -q six > /dev/null 2>&1
    (mkdir -p "$W/napp" && cd "$W/napp" && npm init -y > /dev/null 2>&1 && npm install --silent is-number > /dev/null 2>&1)
    # Liveness and readiness probes, 20 rounds.
    touch /tmp/healthy-$$
    i=0
    while [ $i -lt 20 ]; do
        sh -c 'curl -fsS -o /dev/null http://127.0.0.1:18418/'
        sh -c 'cat /tmp/healthy-'$$' > /dev/null'
        sh -c 'pgrep -f http.server > /dev/null'
        sh -c 'ps aux | grep -v grep | grep -q http.server'
        curl -s -d '{}' -o /dev/null http://127.0.0.1:18418/ready
        wget -q -O /dev/null http://127.0.0.1:18418/ 2>/dev/null
        i=$((i + 1)); sleep 0.5
    done
    rm -f /tmp/healthy-$$
    # Copying the app's files into place, and a log rotated by the app.
    mkdir -p "$W/app" && cp -r "$W/repo" "$W/app/" && : > "$W/app/app.log"
}

container_part() {
    # This subshell's own pid ($$ is the parent's): the builtin read opens
    # /proc/self as the subshell.
    read -r me _ < /proc/self/stat
    for f in $CGROUP_PROCS; do echo "$me" > "$f"; done
    entrypoint
    app_and_probes
}

host_part
( container_part )
kill "$(cat "$W/http.pid")" 2>/dev/null
wait
