"""A throw-away VM with the real Linux Bluetooth stack (run with /usr/bin/python3).

Debian's own kernel (linux-image-amd64, fetched with `apt-get download`,
unpacked into a cache, never installed), a tiny busybox initramfs built here,
and the host's root filesystem shared read-only over virtio-9p as the guest's
/ (tmpfs over the few places that are written).  No systemd, no network, no
disk image.

    from vm import prepare, run_vm, VMError
    kernel, initrd = prepare()          # cached; raises VMError with the reason
    res = run_vm(kernel, initrd, share_dir, guest_script, timeout=600)

Inside, the guest's PID 1 (the initramfs /init) mounts everything, then
switch_roots into the host's tree and runs `guest_script` with bash.  The
script's output goes to share_dir/guest.log, its exit code to
share_dir/guest.rc; then the VM powers off.  share_dir is the writable share,
/run/share in the guest.  The host kills qemu if it overruns `timeout`.

The cache is $ALSABT_VM_CACHE, else $XDG_CACHE_HOME/alsa-bt-vm, else
~/.cache/alsa-bt-vm:
    kernel/<package>/          dpkg -x of linux-image-<version>-amd64, depmod run
    initramfs-<kver>-<hash>.cpio  one per kernel; rebuilt when busybox, /init or the
                               modules change
    unstable-<hash>/           the second stack's root and kernel (rootfs.py)
"""

import glob
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INIT = os.path.join(HERE, 'initramfs-init')
BUSYBOX = '/bin/busybox'
QEMU = os.environ.get('ALSABT_QEMU', 'qemu-system-x86_64')
META_PACKAGE = 'linux-image-amd64'
# Loaded from the initramfs, in this order, to reach the shared root.  The
# rest (bluetooth, hci_vhci, ...) is modprobe'd from the root, whose
# /lib/modules is the unpacked kernel package (a second 9p share).
EARLY_MODULES = ['virtio', 'virtio_ring', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev',
                 'virtio_pci', 'netfs', 'fscache', '9pnet', '9pnet_virtio', '9p', 'overlay']
# Guest directories that get a tmpfs over the read-only root (keep in step with
# initramfs-init).  A host path under one of them is shared separately.
MASKED = ['/tmp', '/run', '/root', '/home', '/mnt', '/media', '/srv', '/var/tmp',
          '/var/log', '/var/cache', '/var/lib/bluetooth', '/var/lib/alsa', '/var/spool']

_libc = None


class VMError(Exception):
    """The VM cannot be prepared or run here; the message says why."""


def cache_dir():
    d = os.environ.get('ALSABT_VM_CACHE')
    if not d:
        base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
        d = os.path.join(base, 'alsa-bt-vm')
    return d


def log(msg):
    print('[vm] %s' % msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the kernel

def _run(argv, cwd=None, timeout=300):
    try:
        r = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except FileNotFoundError:
        raise VMError('%s: not installed' % argv[0])
    except subprocess.TimeoutExpired:
        raise VMError('%s timed out after %d s' % (' '.join(argv), timeout))
    return r.returncode, r.stdout.decode(errors='replace')


def kernel_package_name():
    """linux-image-<version>-amd64, the image package linux-image-amd64 depends on."""
    rc, out = _run(['apt-cache', 'depends', META_PACKAGE], timeout=60)
    if rc == 0:
        for line in out.splitlines():
            line = line.strip()
            if line.startswith('Depends:'):
                name = line.split(':', 1)[1].strip()
                if name.startswith('linux-image-') and name.endswith('-amd64'):
                    return name
    raise VMError('apt-cache does not know %s (run apt-get update?): %s'
                  % (META_PACKAGE, out.strip()[-300:]))


def cached_kernels():
    """[(package dir, vmlinuz, modules dir, version)], newest package first."""
    found = []
    for pkg in sorted(glob.glob(os.path.join(cache_dir(), 'kernel', 'linux-image-*')), reverse=True):
        images = glob.glob(os.path.join(pkg, 'boot', 'vmlinuz-*'))
        mods = glob.glob(os.path.join(pkg, 'lib', 'modules', '*', 'modules.dep'))
        if len(images) == 1 and len(mods) == 1 and os.path.exists(os.path.join(pkg, '.complete')):
            moddir = os.path.dirname(mods[0])
            found.append((pkg, images[0], moddir, os.path.basename(moddir)))
    return found


def fetch_kernel():
    """Downloads and unpacks the current kernel package into the cache. Returns its dir."""
    name = kernel_package_name()
    dest = os.path.join(cache_dir(), 'kernel', name)
    if os.path.exists(os.path.join(dest, '.complete')):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='kernel-', dir=os.path.dirname(dest))
    try:
        os.chmod(tmp, 0o755)     # apt's _apt user downloads into it
        log('fetching %s with apt-get download' % name)
        rc, out = _run(['apt-get', 'download', name], cwd=tmp, timeout=600)
        debs = glob.glob(os.path.join(tmp, '*.deb'))
        if rc != 0 or len(debs) != 1:
            raise VMError('apt-get download %s failed: %s' % (name, out.strip()[-500:]))
        tree = os.path.join(tmp, 'tree')
        rc, out = _run(['dpkg', '-x', debs[0], tree])
        if rc != 0:
            raise VMError('dpkg -x %s failed: %s' % (debs[0], out.strip()[-500:]))
        mods = glob.glob(os.path.join(tree, 'lib', 'modules', '*'))
        if len(mods) != 1:
            raise VMError('%s: expected one lib/modules/<version>, found %r' % (name, mods))
        version = os.path.basename(mods[0])
        depmod = shutil.which('depmod') or '/sbin/depmod'
        rc, out = _run([depmod, '-b', tree, version])
        if rc != 0:
            raise VMError('depmod failed: %s' % out.strip()[-500:])
        with open(os.path.join(tree, '.complete'), 'w') as f:
            f.write(name + '\n')
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tree, dest)
        log('kernel %s unpacked into %s' % (version, dest))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ensure_kernel(fetch=True):
    """(vmlinuz, modules dir, version) from the cache, fetching it if there is none."""
    found = cached_kernels()
    if not found:
        if not fetch:
            raise VMError('no kernel in %s: run tests/system/install-deps' % cache_dir())
        fetch_kernel()
        found = cached_kernels()
        if not found:
            raise VMError('kernel unpacked but not usable in %s' % cache_dir())
    _, vmlinuz, moddir, version = found[0]
    return vmlinuz, moddir, version


# ---------------------------------------------------------------- the initramfs

def _module_path(moddir, name):
    """Relative path of module `name` (as in modules.dep), or None if built in."""
    want = name.replace('-', '_') + '.ko'
    with open(os.path.join(moddir, 'modules.dep')) as f:
        for line in f:
            path = line.split(':', 1)[0]
            if _module_name(path).replace('-', '_') == want:
                return path
    builtin = os.path.join(moddir, 'modules.builtin')
    if not os.path.exists(builtin):
        return None     # 7.x packages ship only modules.builtin.bin: not a module, so built in
    with open(builtin) as f:
        for line in f:
            if os.path.basename(line.strip()).replace('-', '_') == want:
                return None
    raise VMError('module %s is in neither modules.dep nor modules.builtin of %s' % (name, moddir))


def _early_modules(moddir):
    """[(name, relative path)] of EARLY_MODULES with their dependencies, in load order."""
    deps = {}
    with open(os.path.join(moddir, 'modules.dep')) as f:
        for line in f:
            path, _, rest = line.partition(':')
            deps[path] = rest.split()
    order = []

    def visit(path, depth=0):
        if path in order or depth > 50:
            return
        for d in reversed(deps.get(path, [])):
            visit(d, depth + 1)
        order.append(path)

    for name in EARLY_MODULES:
        p = _module_path(moddir, name)
        if p:
            visit(p)
    return order


def _module_name(rel):
    """foo.ko.xz -> foo.ko: the initramfs holds modules uncompressed."""
    name = os.path.basename(rel)
    for ext in ('.xz', '.zst', '.gz'):
        if name.endswith(ext):
            return name[:-len(ext)]
    return name


def _module_bytes(path):
    """A module's contents, uncompressed: busybox's insmod loads plain .ko only
    (Debian's newer kernels ship xz- or zstd-compressed modules)."""
    with open(path, 'rb') as f:
        data = f.read()
    if path.endswith('.xz'):
        import lzma
        return lzma.decompress(data)
    if path.endswith('.gz'):
        import gzip
        return gzip.decompress(data)
    if path.endswith('.zst'):
        rc = subprocess.run(['zstd', '-dc', path], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
        if rc.returncode != 0:
            raise VMError('cannot decompress %s: apt-get install zstd' % path)
        return rc.stdout
    return data


def _cpio_newc(entries):
    """bytes of a newc cpio archive of entries: (name, mode, data bytes or link target)."""
    out = bytearray()
    ino = 1
    for name, mode, data in entries + [('TRAILER!!!', 0, b'')]:
        nameb = name.encode() + b'\0'
        hdr = '070701' + ''.join('%08x' % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nameb), 0))
        out += hdr.encode() + nameb
        out += b'\0' * ((4 - len(out) % 4) % 4)
        out += data
        out += b'\0' * ((4 - len(out) % 4) % 4)
        ino += 1
    return bytes(out)


def ensure_initramfs(moddir):
    """Path of the cached initramfs for this kernel; built if its inputs changed."""
    if not os.path.exists(BUSYBOX):
        raise VMError('%s missing: apt-get install busybox-static' % BUSYBOX)
    with open(BUSYBOX, 'rb') as f:
        busybox = f.read()
    if b'switch_root' not in busybox:
        raise VMError('%s has no switch_root applet: install busybox-static' % BUSYBOX)
    with open(INIT, 'rb') as f:
        init = f.read()
    mods = _early_modules(moddir)
    h = hashlib.sha256(busybox + init)
    blobs = []
    for rel in mods:
        data = _module_bytes(os.path.join(moddir, rel))
        h.update(rel.encode() + data)
        blobs.append((_module_name(rel), data))
    kver = os.path.basename(moddir)
    path = os.path.join(cache_dir(), 'initramfs-%s-%s.cpio' % (kver, h.hexdigest()[:16]))
    if os.path.exists(path):
        return path
    d, f, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    entries = [(n, d, b'') for n in ('bin', 'dev', 'proc', 'sys', 'newroot', 'modules')]
    entries += [('bin/busybox', x, busybox), ('init', x, init),
                ('bin/sh', stat.S_IFLNK | 0o777, b'busybox')]
    entries += [('modules/' + n, f, data) for n, data in blobs]
    entries += [('modules/order', f, ''.join(n + '\n' for n, _ in blobs).encode())]
    os.makedirs(cache_dir(), exist_ok=True)
    for old in glob.glob(os.path.join(cache_dir(), 'initramfs-%s-*.cpio' % kver)) + \
            glob.glob(os.path.join(cache_dir(), 'initramfs-????????????????.cpio')):
        os.unlink(old)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as out:
        out.write(_cpio_newc(entries))
    os.rename(tmp, path)
    log('built %s (%d modules)' % (path, len(blobs)))
    return path


# ---------------------------------------------------------------- the stacks

# The two stacks every system test runs on.  'bookworm' is this host's own
# Debian 12 (its root shared read-only, its apt's kernel); 'unstable' is
# Debian unstable's BlueZ, kernel, bluez-alsa and PipeWire, built by rootfs.py
# into the cache.  Both run the plugins as built on the host (see README.md).
STACKS = ('bookworm', 'unstable')
# The packages whose versions a run reports ("proven on").
REPORTED = ['bluez', 'bluez-test-tools', 'bluez-alsa-utils', 'pipewire', 'wireplumber',
            'alsa-utils', 'libasound2', 'libc6']


class Stack:
    """One stack, ready to boot: its root, kernel, initramfs and versions."""

    def __init__(self, name, root, vmlinuz, moddir, initrd, versions):
        self.name, self.root, self.vmlinuz = name, root, vmlinuz
        self.moddir, self.initrd, self.versions = moddir, initrd, versions

    def describe(self):
        v = self.versions
        return ('%s: kernel %s, BlueZ %s, bluez-alsa %s, PipeWire %s, WirePlumber %s, '
                'alsa-lib %s, glibc %s' % (
                    self.name, v.get('kernel', '?'), v.get('bluez', '?'),
                    v.get('bluez-alsa-utils', '?'), v.get('pipewire', '?'),
                    v.get('wireplumber', '?'),
                    v.get('libasound2t64', v.get('libasound2', '?')), v.get('libc6', '?')))


def _host_versions(kernel_version):
    v = {'suite': 'bookworm', 'kernel': kernel_version}
    rc, out = _run(['dpkg-query', '-W', '-f', '${Package} ${Version}\\n'] + REPORTED, timeout=60)
    for line in out.splitlines():
        k, _, ver = line.partition(' ')
        if ver:
            v[k] = ver
    return v


def prepare(stack='bookworm', fetch=True):
    """The Stack named `stack`: everything cached, built or fetched as needed."""
    if not shutil.which(QEMU):
        raise VMError('%s not found: apt-get install qemu-system-x86' % QEMU)
    if stack == 'bookworm':
        vmlinuz, moddir, version = ensure_kernel(fetch)
        return Stack(stack, '/', vmlinuz, moddir, ensure_initramfs(moddir),
                     _host_versions(version))
    if stack == 'unstable':
        import rootfs
        root, tree, versions = rootfs.ensure_unstable(build_it=fetch)
        images = rootfs.kernel_images(tree)
        mods = [os.path.join(m, 'modules.dep') for m in rootfs.modules_dirs(tree)]
        if len(images) != 1 or len(mods) != 1 or not os.path.exists(mods[0]):
            raise VMError('the unstable kernel in %s is incomplete' % tree)
        moddir = os.path.dirname(mods[0])
        return Stack(stack, root, images[0], moddir, ensure_initramfs(moddir), versions)
    raise VMError('unknown stack %r (known: %s)' % (stack, ', '.join(STACKS)))


# ---------------------------------------------------------------- running it

def accel(icount=False):
    """'kvm' when the CPU can do it here, else multi-threaded TCG.  icount:
    single-threaded TCG counting instructions, one guest nanosecond each
    (-icount shift=0), so that the guest's CPU figures repeat run to run
    (make bench); the guest then runs at its own pace, not the host's."""
    if icount:
        return ['-accel', 'tcg,thread=single', '-icount', 'shift=0,sleep=on', '-cpu', 'max']
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
        if (' vmx' in flags or ' svm' in flags) and os.access('/dev/kvm', os.R_OK | os.W_OK):
            return ['-accel', 'kvm', '-cpu', 'host']
    except OSError:
        pass
    return ['-accel', 'tcg,thread=multi', '-cpu', 'max']


def _die_with_parent():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)     # PR_SET_PDEATHSIG


def _under(path, dirs):
    return any(path == d or path.startswith(d + '/') for d in dirs)


class VMResult:
    def __init__(self, rc, guest_rc, elapsed, timed_out, console):
        self.rc, self.guest_rc, self.elapsed = rc, guest_rc, elapsed
        self.timed_out, self.console = timed_out, console

    def __repr__(self):
        return 'VMResult(qemu rc=%r, guest rc=%r, %.1f s%s)' % (
            self.rc, self.guest_rc, self.elapsed, ', TIMED OUT' if self.timed_out else '')


def run_vm(stack, share, script, timeout, extra_paths=(), memory=2048,
           cpus=1, guest_timeout=None, icount=False):
    """Boots `stack` (prepare()), runs `bash script` in the guest, powers off.
    Returns a VMResult.

    share: host dir, writable, /run/share in the guest.  extra_paths: host dirs
    the guest must see at the same path (the repo, the build dir); those under
    a guest tmpfs (MASKED), or all of them when the root is not the host's,
    are shared separately.  qemu is killed after
    `timeout` s; the guest gives its script guest_timeout s (default timeout - 15).

    One vCPU by default: under TCG, two vCPUs made the emulated radio
    (btvirt, every media packet four round trips through user space) jitter
    by tens of ms and the plugin's small socket overflowed; with one vCPU the
    same runs drop nothing, and finish sooner.  icount: see accel().
    """
    share = os.path.realpath(share)
    console = os.path.join(share, 'console.log')
    for p in ('guest.rc', 'guest.log', 'console.log'):
        try:
            os.unlink(os.path.join(share, p))
        except FileNotFoundError:
            pass
    shares = [('hostroot', stack.root, True), ('share', share, False),
              ('kernel', os.path.dirname(os.path.dirname(os.path.dirname(stack.moddir))), True)]
    mounts = []
    for i, p in enumerate(sorted({os.path.realpath(p) for p in extra_paths})):
        if (_under(p, MASKED) or stack.root != '/') and not _under(p, [share]):
            if any(c in p for c in ' ,=\t\n'):
                raise VMError('cannot share %r: no spaces, commas or = in the path, please' % p)
            shares.append(('extra%d' % i, p, True))
            mounts.append('extra%d:%s' % (i, p))
    args = [QEMU] + accel(icount) + [
        '-smp', str(cpus), '-m', str(memory), '-machine', 'q35',
        '-nodefaults', '-no-user-config', '-nographic', '-monitor', 'none',
        '-serial', 'file:' + console, '-no-reboot', '-net', 'none',
        '-kernel', stack.vmlinuz, '-initrd', stack.initrd]
    for tag, path, ro in shares:
        args += ['-virtfs', 'local,path=%s,mount_tag=%s,security_model=none,multidevs=remap%s'
                 % (path, tag, ',readonly=on' if ro else '')]
    gt = int(guest_timeout if guest_timeout is not None else max(10, timeout - 15))
    append = ['console=ttyS0', 'panic=-1', 'quiet', 'loglevel=4', 'tsc=reliable',
              'alsabt.script=' + script, 'alsabt.timeout=%d' % gt]
    if mounts:
        append.append('alsabt.mounts=' + ','.join(mounts))
    if stack.root != '/':
        append.append('alsabt.overlay=1')
    args += ['-append', ' '.join(append)]
    start = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    elapsed = time.monotonic() - start
    try:
        os.killpg(proc.pid, signal.SIGKILL)     # nothing should be left; make sure
    except ProcessLookupError:
        pass
    guest_rc = None
    try:
        with open(os.path.join(share, 'guest.rc')) as f:
            guest_rc = int(f.read().strip() or -1)
    except (OSError, ValueError):
        pass
    text = ''
    try:
        with open(console, errors='replace') as f:
            text = f.read()
    except OSError:
        pass
    if out:
        text += '\n[qemu] ' + out.decode(errors='replace')
    return VMResult(proc.returncode, guest_rc, elapsed, timed_out, text)


if __name__ == '__main__':
    # python3 vm.py prepare [all] | python3 vm.py run SHARE SCRIPT [TIMEOUT]
    # (ALSABT_STACK=unstable: the second stack)
    try:
        stack = os.environ.get('ALSABT_STACK', 'bookworm')
        if sys.argv[1:2] == ['prepare']:
            for name in (STACKS if sys.argv[2:3] == ['all'] else [stack]):
                st = prepare(name)
                print('%s (kernel %s, initramfs %s)' % (st.describe(), st.vmlinuz, st.initrd))
        elif sys.argv[1:2] == ['run']:
            r = run_vm(prepare(stack), sys.argv[2], sys.argv[3],
                       int(sys.argv[4]) if len(sys.argv) > 4 else 120,
                       extra_paths=sys.argv[5:])
            print(r)
            sys.exit(0 if r.guest_rc == 0 else 1)
        else:
            print(__doc__)
            sys.exit(2)
    except VMError as e:
        print('VM ERROR: %s' % e, file=sys.stderr)
        sys.exit(1)
