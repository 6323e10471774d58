package image

import (
	"debug/pe"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// DefaultStub is Debian's systemd EFI stub (package systemd-boot-efi).
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// sectionAlign keeps each added section on a page boundary.
const sectionAlign = 0x10000

// UKI writes a unified kernel image to out: the systemd EFI stub with the
// os-release, command line, kernel and initramfs added as PE sections, so
// UEFI firmware boots it with no boot loader. objcopy places the sections
// after the stub's own (read with debug/pe) at fixed, aligned addresses, so
// the same inputs give the same bytes.
func UKI(in Inputs, out string) error {
	stub := in.Stub
	if stub == "" {
		stub = DefaultStub
	}
	f, err := pe.Open(stub)
	if err != nil {
		return fmt.Errorf("EFI stub %s: %w (install Debian's systemd-boot-efi: make deps)", stub, err)
	}
	var end uint64
	for _, s := range f.Sections {
		if e := uint64(s.VirtualAddress) + uint64(s.VirtualSize); e > end {
			end = e
		}
	}
	var base uint64
	if oh, ok := f.OptionalHeader.(*pe.OptionalHeader64); ok {
		base = oh.ImageBase
	}
	f.Close()

	tmp, err := os.MkdirTemp(filepath.Dir(out), ".uki-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	osrel := filepath.Join(tmp, "os-release")
	if err := os.WriteFile(osrel, []byte(in.osRelease()), 0o644); err != nil {
		return err
	}
	cmdline := filepath.Join(tmp, "cmdline")
	if err := os.WriteFile(cmdline, []byte(in.Cmdline+"\x00"), 0o644); err != nil {
		return err
	}

	args := []string{}
	vma := alignUp(end, sectionAlign)
	for _, s := range []struct{ name, file string }{
		{".osrel", osrel}, {".cmdline", cmdline}, {".linux", in.Kernel}, {".initrd", in.Initrd},
	} {
		st, err := os.Stat(s.file)
		if err != nil {
			return fmt.Errorf("UKI section %s: %w", s.name, err)
		}
		args = append(args,
			"--add-section", s.name+"="+s.file,
			"--change-section-vma", s.name+"=0x"+strconv.FormatUint(base+vma, 16))
		vma = alignUp(vma+uint64(st.Size()), sectionAlign)
	}
	args = append(args, stub, out)
	cmd := exec.Command(objcopy(), args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("objcopy (binutils) building the unified kernel image: %v: %s", err, b)
	}
	if err := zeroPETimestamp(out); err != nil {
		return fmt.Errorf("unified kernel image %s: %w", out, err)
	}
	// Check what the firmware will see.
	g, err := pe.Open(out)
	if err != nil {
		return fmt.Errorf("unified kernel image %s does not read back as PE: %w", out, err)
	}
	defer g.Close()
	for _, name := range []string{".osrel", ".cmdline", ".linux", ".initrd"} {
		if g.Section(name) == nil {
			return fmt.Errorf("unified kernel image %s lacks section %s", out, name)
		}
	}
	return nil
}

func objcopy() string {
	if p := os.Getenv("OBJCOPY"); p != "" {
		return p
	}
	return "objcopy"
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }

// zeroPETimestamp clears the COFF timestamp objcopy stamps into the image
// and recomputes the PE checksum, so equal inputs give equal bytes.
func zeroPETimestamp(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) < 0x40 {
		return fmt.Errorf("too short for a PE image")
	}
	peOff := int(binary.LittleEndian.Uint32(b[0x3c:]))
	if peOff+24+68 > len(b) || string(b[peOff:peOff+4]) != "PE\x00\x00" {
		return fmt.Errorf("no PE header")
	}
	binary.LittleEndian.PutUint32(b[peOff+8:], 0)
	sumOff := peOff + 24 + 64
	binary.LittleEndian.PutUint32(b[sumOff:], 0)
	binary.LittleEndian.PutUint32(b[sumOff:], peChecksum(b, sumOff))
	return os.WriteFile(path, b, 0o644)
}

// peChecksum is the PE image checksum: the 16-bit one's-complement-style
// sum of the file (checksum field taken as zero) plus its length.
func peChecksum(b []byte, sumOff int) uint32 {
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		if i == sumOff || i == sumOff+2 {
			continue
		}
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}
