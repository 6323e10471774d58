package qemu_test

import (
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/xts"
)

// The disks of the layout rows are made on this host with Debian's own
// tools where the host's kernel allows it. The host may run a kernel with
// neither device-mapper nor md (a microVM): so LVM metadata is written by
// lvm with --driverloaded n on a loop device, LUKS2 headers by cryptsetup
// luksFormat on a file, and the filesystem is placed into the logical
// volume or the encrypted data segment by the test itself (for LUKS,
// encrypted with the volume key given to luksFormat, AES-XTS-plain64 as
// dm-crypt does). md superblocks are written by the test (the layout is the
// kernel's, struct mdp_superblock_1) and checked with mdadm --examine.

// run runs a tool and returns its standard output.
func run(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// sparseFile makes an empty file of size bytes.
func sparseFile(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeAt copies the file src into dst at offset.
func writeAt(t *testing.T, dst string, offset int64, src string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Seek(offset, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// extract copies size bytes at offset of src into a new file.
func extract(t *testing.T, src string, offset, size int64) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(t.TempDir(), "extracted.img")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, io.NewSectionReader(in, offset, size)); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

var vgSeq atomic.Int64

// lvmDisk makes a disk that is one LVM2 physical volume of a volume group
// (a unique name) whose logical volume "root" holds the filesystem image
// fs. It returns the disk and the byte offset of the LV in it.
func lvmDisk(t *testing.T, fs string) (disk string, offset int64) {
	t.Helper()
	disk = filepath.Join(t.TempDir(), "pv.img")
	sparseFile(t, disk, fileSize(t, fs)+8<<20)
	loop := strings.TrimSpace(run(t, nil, "losetup", "--find", "--show", disk))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	vg := fmt.Sprintf("ertest%d_%d", os.Getpid(), vgSeq.Add(1))
	cfg := fmt.Sprintf(`devices{obtain_device_list_from_udev=0 use_devicesfile=0 filter=["a|^%s$|","r|.*|"]} activation{udev_sync=0 udev_rules=0 monitoring=0} backup{backup=0 archive=0}`, loop)
	lvm := func(args ...string) string {
		return run(t, nil, "lvm", append(args, "--driverloaded", "n", "--config", cfg)...)
	}
	lvm("pvcreate", "-q", loop)
	lvm("vgcreate", "-q", vg, loop)
	lvm("lvcreate", "-q", "-an", "-Zn", "-l", "100%FREE", "-n", "root", vg)
	ranges := strings.TrimSpace(lvm("lvs", "--noheadings", "-o", "seg_pe_ranges", vg+"/root"))
	if !strings.Contains(ranges, ":0-") {
		t.Fatalf("LV %s/root does not start at the first extent: %s", vg, ranges)
	}
	peStart := strings.TrimSuffix(strings.TrimSpace(lvm("pvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "pe_start", loop)), "B")
	n, err := strconv.ParseInt(peStart, 10, 64)
	if err != nil {
		t.Fatalf("pe_start %q: %v", peStart, err)
	}
	run(t, nil, "losetup", "-d", loop)
	writeAt(t, disk, n, fs)
	return disk, n
}

// xfsImage makes an XFS image (mkfs.xfs -p, a prototype file) holding
// /etc/kubernetes/manifests/etcd-member.yaml.
func xfsImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	manifest := filepath.Join(dir, "etcd-member.yaml")
	if err := os.WriteFile(manifest, []byte("kind: Pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	proto := "/dev/null\n0 0\nd--755 0 0\netc d--755 0 0\nkubernetes d--755 0 0\nmanifests d--755 0 0\netcd-member.yaml ---644 0 0 " + manifest + "\n$\n$\n$\n$\n"
	pf := filepath.Join(dir, "proto")
	if err := os.WriteFile(pf, []byte(proto), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "root.xfs")
	sparseFile(t, img, 320<<20)
	run(t, nil, "mkfs.xfs", "-q", "-L", "root", "-p", pf, img)
	return img
}

// md superblock 1.2: at 4 KiB, data from 1 MiB.
const (
	mdSuperOffset = 8    // sectors
	mdDataOffset  = 2048 // sectors
)

// raidMember makes one member (devNumber 0 or 1) of a two-disk md RAID1
// with a version 1.2 superblock, whose data is the filesystem image fs.
func raidMember(t *testing.T, fs string, setUUID [16]byte, devNumber int) string {
	t.Helper()
	disk := filepath.Join(t.TempDir(), fmt.Sprintf("md%d.img", devNumber))
	size := fileSize(t, fs) + 2<<20
	sparseFile(t, disk, size)
	dataSectors := uint64(size/512) - mdDataOffset
	sb := make([]byte, 256+2*2)
	le := binary.LittleEndian
	le.PutUint32(sb[0:], 0xa92b4efc)
	le.PutUint32(sb[4:], 1) // major version
	copy(sb[16:32], setUUID[:])
	copy(sb[32:64], "lab:root")
	le.PutUint64(sb[64:], 1767225600) // ctime
	le.PutUint32(sb[72:], 1)          // level
	le.PutUint64(sb[80:], dataSectors)
	le.PutUint32(sb[92:], 2) // raid disks
	le.PutUint64(sb[128:], mdDataOffset)
	le.PutUint64(sb[136:], dataSectors)
	le.PutUint64(sb[144:], mdSuperOffset)
	le.PutUint32(sb[160:], uint32(devNumber))
	copy(sb[168:184], setUUID[:])
	sb[183] = byte(devNumber) // device uuid differs from the set's
	le.PutUint64(sb[192:], 1767225600)
	le.PutUint64(sb[200:], 10)         // events
	le.PutUint64(sb[208:], ^uint64(0)) // in sync
	le.PutUint32(sb[220:], 2)          // max_dev
	le.PutUint16(sb[256:], 0)          // role of device 0
	le.PutUint16(sb[258:], 1)          // role of device 1
	var sum uint64
	for i := 0; i+4 <= len(sb); i += 4 {
		sum += uint64(le.Uint32(sb[i:]))
	}
	le.PutUint32(sb[216:], uint32(sum&0xffffffff)+uint32(sum>>32))
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(sb, mdSuperOffset*512); err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeAt(t, disk, mdDataOffset*512, fs)
	out := run(t, nil, "mdadm", "--examine", disk)
	for _, want := range []string{"Raid Level : raid1", "Raid Devices : 2", "Checksum : ", "correct", "State : clean"} {
		if !strings.Contains(out, want) {
			t.Fatalf("mdadm --examine of the member lacks %q:\n%s", want, out)
		}
	}
	return disk
}

// luksDisk makes a LUKS2 volume (cryptsetup luksFormat, passphrase
// keyslot, argon2id sized for a small VM) whose data segment holds fs,
// encrypted with the volume key; token, if set, is imported as a LUKS2
// token (a TPM2 binding).
func luksDisk(t *testing.T, fs, passphrase, token string) (disk, uuid string) {
	t.Helper()
	dir := t.TempDir()
	disk = filepath.Join(dir, "luks.img")
	sparseFile(t, disk, fileSize(t, fs)+16<<20)
	vk := make([]byte, 64)
	if _, err := rand.Read(vk); err != nil {
		t.Fatal(err)
	}
	vkFile := filepath.Join(dir, "volume.key")
	if err := os.WriteFile(vkFile, vk, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, []byte(passphrase), "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
		"--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "512",
		"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1",
		"--volume-key-file", vkFile, "--key-file", "-", disk)
	if token != "" {
		tf := filepath.Join(dir, "token.json")
		if err := os.WriteFile(tf, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, nil, "cryptsetup", "token", "import", "--disable-external-tokens", "--json-file", tf, disk)
	}
	var meta struct {
		Segments map[string]struct {
			Offset     string `json:"offset"`
			Encryption string `json:"encryption"`
			SectorSize int    `json:"sector_size"`
		} `json:"segments"`
	}
	if err := json.Unmarshal([]byte(run(t, nil, "cryptsetup", "luksDump", "--dump-json-metadata", disk)), &meta); err != nil {
		t.Fatal(err)
	}
	seg := meta.Segments["0"]
	if seg.Encryption != "aes-xts-plain64" || seg.SectorSize != 512 {
		t.Fatalf("LUKS2 segment %+v: want aes-xts-plain64 with 512-byte sectors", seg)
	}
	offset, err := strconv.ParseInt(seg.Offset, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	c, err := xts.NewCipher(aes.NewCipher, vk)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := os.ReadFile(fs)
	if err != nil {
		t.Fatal(err)
	}
	enc := make([]byte, len(plain))
	for s := 0; s*512 < len(plain); s++ {
		c.Encrypt(enc[s*512:(s+1)*512], plain[s*512:(s+1)*512], uint64(s))
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(enc, offset); err != nil {
		t.Fatal(err)
	}
	f.Close()
	uuid = strings.TrimSpace(run(t, nil, "cryptsetup", "luksUUID", disk))
	return disk, uuid
}

// ext4Files dumps paths of an ext4 image (debugfs, no mount) and returns
// which are missing.
func ext4Missing(t *testing.T, img string, paths ...string) []string {
	t.Helper()
	var missing []string
	for _, p := range paths {
		out, err := exec.Command("debugfs", "-R", "stat "+p, img).CombinedOutput()
		if err != nil || regexp.MustCompile(`File not found|not found by ext2_lookup`).Match(out) {
			missing = append(missing, p)
		}
	}
	return missing
}
