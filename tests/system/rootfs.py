"""The second VM stack: a Debian unstable root filesystem and its kernel, in a cache.

    from rootfs import ensure_unstable
    root, kernel_tree, versions = ensure_unstable()   # built once, then cached

mmdebstrap builds the root from Debian's registry (the mirror the host's apt
already uses for Debian) into $cache/unstable-<hash>/root, from the packages
in unstable.packages; linux-image-amd64's image package of the same suite is
fetched by the same apt and unpacked into $cache/unstable-<hash>/kernel
(dpkg -x + depmod), never installed anywhere.  <hash> covers the package list
and this file, so the root is rebuilt only when one of them changes (or the
cache is missing); older roots are removed once a new one is complete.
Nothing touches the host's own apt state or its installed packages.

Debian's registry here serves a frozen snapshot whose Release files are past
their Valid-Until date: apt is told not to check that date (the signatures
are still checked, with the host's debian-archive-keyring).
"""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys

import vm

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = os.path.join(HERE, 'unstable.packages')
SUITE = 'unstable'
KERNEL_META = 'linux-image-amd64'
# What versions.txt reports (dpkg -l in the root), for the README's "proven on".
REPORTED = ['bluez', 'bluez-test-tools', 'bluez-alsa-utils', 'pipewire', 'wireplumber',
            'libasound2t64', 'alsa-utils', 'libc6', 'python3', 'dbus-daemon']

# Runs inside mmdebstrap (sh, $1 = the new root), with the root's own apt
# configuration: downloads the kernel image package that linux-image-amd64
# depends on in that suite into $ALSABT_KERNEL_DEBS.
KERNEL_HOOK = r'''set -e
export APT_CONFIG="$MMDEBSTRAP_APT_CONFIG"
deps() { apt-cache depends "$1" | sed -n 's/^ *Depends: \(linux-[a-z]*-[0-9][^ ]*-amd64\)$/\1/p'; }
img=$(deps %s | grep '^linux-image-' | head -n 1)
[ -n "$img" ] || { echo "no kernel image package behind %s" >&2; exit 1; }
# Since 7.x the image package is split: the kernel binary and the modules
# are packages of their own that it depends on.
cd "$ALSABT_KERNEL_DEBS" && apt-get download "$img" $(deps "$img" | grep -E '^linux-(binary|modules)-')
''' % (KERNEL_META, KERNEL_META)


def packages():
    with open(PACKAGES) as f:
        return [w for line in f for w in line.split('#', 1)[0].split()]


def cache_key():
    h = hashlib.sha256()
    for p in (PACKAGES, os.path.abspath(__file__)):
        with open(p, 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:12]


def debian_mirror():
    """The URI the host's apt uses for Debian's main archive."""
    texts = []
    for p in ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*')):
        try:
            with open(p, errors='replace') as f:
                texts.append(f.read())
        except OSError:
            pass
    text = '\n'.join(texts)
    # deb822 stanzas (URIs: ... Suites: bookworm ...) and one-line entries
    for stanza in re.split(r'\n\s*\n', text):
        uris = re.search(r'^URIs:\s*(\S+)', stanza, re.M)
        suites = re.search(r'^Suites:\s*(.+)$', stanza, re.M)
        if uris and suites and re.search(r'\b(bookworm|trixie|stable)\b', suites.group(1)) \
                and 'security' not in suites.group(1) and '/debian' in uris.group(1):
            return uris.group(1)
    m = re.search(r'^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s+(bookworm|trixie|stable)\s', text, re.M)
    if m:
        return m.group(1)
    raise vm.VMError('cannot tell which Debian mirror the host uses (no Debian entry in '
                     '/etc/apt/sources.list*)')


def complete_roots():
    return sorted(glob.glob(os.path.join(vm.cache_dir(), 'unstable-*', '.complete')))


def _read_versions(d):
    out = {}
    try:
        with open(os.path.join(d, 'versions.txt')) as f:
            for line in f:
                k, _, v = line.strip().partition(' ')
                out[k] = v
    except OSError:
        pass
    return out


def _kernel_tree(d, debs):
    tree = os.path.join(d, 'kernel')
    for deb in debs:
        rc, out = vm._run(['dpkg', '-x', deb, tree])
        if rc != 0:
            raise vm.VMError('dpkg -x %s failed: %s' % (deb, out.strip()[-500:]))
    mods = modules_dirs(tree)
    if len(mods) != 1 or len(kernel_images(tree)) != 1:
        raise vm.VMError('%s: expected a vmlinuz and one lib/modules/<version>, found %r'
                         % (' '.join(map(os.path.basename, debs)), mods))
    # Newer kernel packages put the modules under usr/ (merged /usr).
    base = os.path.dirname(os.path.dirname(os.path.dirname(mods[0])))
    rc, out = vm._run([shutil.which('depmod') or '/sbin/depmod', '-b', base,
                       os.path.basename(mods[0])])
    if rc != 0:
        raise vm.VMError('depmod failed: %s' % out.strip()[-500:])
    return tree


def modules_dirs(tree):
    return glob.glob(os.path.join(tree, 'lib', 'modules', '*')) + \
        glob.glob(os.path.join(tree, 'usr', 'lib', 'modules', '*'))


def kernel_images(tree):
    # boot/vmlinuz-<version> until 6.x; lib/modules/<version>/vmlinuz in 7.x
    return glob.glob(os.path.join(tree, 'boot', 'vmlinuz-*')) + \
        glob.glob(os.path.join(tree, 'usr', 'lib', 'modules', '*', 'vmlinuz'))


def build(d):
    """mmdebstrap into d/root, the kernel into d/kernel, versions.txt."""
    if not shutil.which('mmdebstrap'):
        raise vm.VMError('mmdebstrap not found: apt-get install mmdebstrap (tests/system/install-deps)')
    if os.geteuid() != 0:
        raise vm.VMError('building the unstable root needs root (tests/system/install-deps)')
    shutil.rmtree(d, ignore_errors=True)
    debs = os.path.join(d, 'debs')
    os.makedirs(debs)
    os.chmod(debs, 0o777)       # apt's _apt user downloads into it
    mirror = debian_mirror()
    vm.log('building the Debian %s root in %s from %s (once; a few minutes)' % (SUITE, d, mirror))
    argv = ['mmdebstrap', '--mode=root', '--variant=apt',
            '--aptopt=Acquire::Check-Valid-Until "false"',
            '--include=' + ','.join(packages()),
            '--customize-hook=' + KERNEL_HOOK,
            "--customize-hook=chroot \"$1\" dpkg-query -W -f '${Package} ${Version}\\n' > \"$1/../versions.all\"",
            SUITE, os.path.join(d, 'root'), mirror]
    env = dict(os.environ, ALSABT_KERNEL_DEBS=debs)
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env, timeout=1800)
    if r.returncode != 0:
        raise vm.VMError('mmdebstrap failed (exit %d): %s' % (
            r.returncode, r.stdout.decode(errors='replace').strip()[-1500:]))
    found = glob.glob(os.path.join(debs, 'linux-*.deb'))
    if not found:
        raise vm.VMError('the kernel package was not fetched')
    _kernel_tree(d, found)
    kver = os.path.basename(modules_dirs(os.path.join(d, 'kernel'))[0])
    allv = {}
    with open(os.path.join(d, 'versions.all')) as f:
        for line in f:
            k, _, v = line.strip().partition(' ')
            allv[k] = v
    with open(os.path.join(d, 'versions.txt'), 'w') as f:
        f.write('suite %s\nkernel %s\n' % (SUITE, kver))
        for p in REPORTED:
            if p in allv:
                f.write('%s %s\n' % (p, allv[p]))
    shutil.rmtree(debs)
    with open(os.path.join(d, '.complete'), 'w') as f:
        f.write(cache_key() + '\n')


def ensure_unstable(build_it=True):
    """(root dir, kernel tree, versions dict) of the current unstable root."""
    d = os.path.join(vm.cache_dir(), 'unstable-' + cache_key())
    if not os.path.exists(os.path.join(d, '.complete')):
        if not build_it:
            raise vm.VMError('no Debian %s root in %s: run tests/system/install-deps' % (SUITE, d))
        build(d)
        for old in glob.glob(os.path.join(vm.cache_dir(), 'unstable-*')):
            if old != d:
                shutil.rmtree(old, ignore_errors=True)
    return os.path.join(d, 'root'), os.path.join(d, 'kernel'), _read_versions(d)


if __name__ == '__main__':
    try:
        root, kernel, versions = ensure_unstable()
    except vm.VMError as e:
        print('VM ERROR: %s' % e, file=sys.stderr)
        sys.exit(1)
    print(root)
    for k, v in versions.items():
        print('  %s %s' % (k, v))
