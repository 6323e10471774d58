package volumes

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
)

// Header is what a LUKS header says that the boot needs.
type Header struct {
	Version int
	UUID    string
	// Tokens are the LUKS2 token types (systemd-tpm2, clevis, ...).
	Tokens []string
}

// ReadHeader reads the LUKS header at the start of dev.
func ReadHeader(dev string) (Header, error) {
	f, err := os.Open(dev)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	b := make([]byte, 4096)
	if _, err := io.ReadFull(f, b); err != nil {
		return Header{}, fmt.Errorf("read LUKS header of %s: %w", dev, err)
	}
	if string(b[:6]) != string(luksMagic) {
		return Header{}, fmt.Errorf("%s has no LUKS header", dev)
	}
	h := Header{Version: int(binary.BigEndian.Uint16(b[6:8])), UUID: cstr(b[168:208])}
	if h.Version != 2 {
		return h, nil
	}
	// LUKS2: the JSON metadata follows the 4 KiB binary header, up to
	// hdr_size; 4 MiB is the largest the format allows.
	size := binary.BigEndian.Uint64(b[8:16])
	if size <= 4096 || size > 4<<20 {
		return h, fmt.Errorf("LUKS2 header of %s has a bad size %d", dev, size)
	}
	js := make([]byte, size-4096)
	if _, err := f.ReadAt(js, 4096); err != nil {
		return h, fmt.Errorf("read LUKS2 metadata of %s: %w", dev, err)
	}
	var meta struct {
		Tokens map[string]struct {
			Type string `json:"type"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(cstr(js)), &meta); err != nil {
		return h, fmt.Errorf("LUKS2 metadata of %s: %w", dev, err)
	}
	for _, t := range meta.Tokens {
		h.Tokens = append(h.Tokens, t.Type)
	}
	sort.Strings(h.Tokens)
	return h, nil
}

func cstr(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// boundTokens are the LUKS2 token types that unlock without a typed
// passphrase, with the hardware or server they need.
var boundTokens = map[string]string{
	"systemd-tpm2":   "TPM2",
	"clevis":         "Tang/TPM2 (clevis)",
	"systemd-fido2":  "FIDO2",
	"systemd-pkcs11": "PKCS#11",
}

// openLUKS opens a LUKS volume with the first key that fits, as
// luks-<UUID> (the name systemd gives it).
func (a *Activator) openLUKS(ctx context.Context, m member) bool {
	h, err := ReadHeader(m.dev)
	if err != nil {
		a.problem(m.dev, fmt.Errorf("LUKS volume %s: %w", m.dev, err))
		return false
	}
	what := fmt.Sprintf("LUKS volume %s (UUID %s)", m.dev, h.UUID)
	if len(a.Keys) == 0 {
		var bound []string
		for _, t := range h.Tokens {
			if hw, ok := boundTokens[t]; ok {
				bound = append(bound, hw)
			}
		}
		if len(bound) > 0 {
			a.problem(m.dev, fmt.Errorf("%s is bound to %s, which this image does not unlock; %s", what, strings.Join(bound, ", "), a.KeyHelp))
			return false
		}
		a.problem(m.dev, fmt.Errorf("%s needs a key and none was given; %s", what, a.KeyHelp))
		return false
	}
	if err := a.load("dm_mod", "dm_crypt", "ecb", "xts"); err != nil {
		a.problem(m.dev, fmt.Errorf("%s: load dm_crypt: %w", what, err))
		return false
	}
	// AES-NI when the CPU has it (an emulated one may not); the generic
	// AES serves otherwise.
	if a.cpuHas("aes") {
		_ = a.load("aesni_intel")
	}
	_ = a.load("algif_skcipher")
	name := "luks-" + h.UUID
	var tried []string
	for _, k := range a.Keys {
		args := []string{"open", "--type", "luks", "--key-file=-", "--disable-locks", "--disable-keyring", "--disable-external-tokens"}
		if a.ReadOnly {
			args = append(args, "--readonly")
		}
		args = append(args, m.dev, name)
		out, err := a.Run(ctx, k.Data, Cryptsetup, args...)
		if err == nil {
			dm := a.dmByName(name)
			a.looked[dm] = false
			fmt.Fprintf(a.Console, "volumes: %s opened %s as /dev/mapper/%s (/dev/%s) with the key from %s\n", what, modeWord(a.ReadOnly), name, dm, k.Source)
			return true
		}
		// cryptsetup exits 2 when the key fits no key slot.
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 2 {
			tried = append(tried, k.Source)
			continue
		}
		a.problem(m.dev, fmt.Errorf("%s: cryptsetup open: %v: %s", what, err, lastLines(out)))
		return false
	}
	a.problem(m.dev, fmt.Errorf("%s: no key given opens it (tried %s); %s", what, strings.Join(tried, ", "), a.KeyHelp))
	return false
}

// cpuHas reports whether /proc/cpuinfo lists the CPU flag.
func (a *Activator) cpuHas(flag string) bool {
	b, err := os.ReadFile(a.path("/proc/cpuinfo"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			return slices.Contains(strings.Fields(v), flag)
		}
	}
	return false
}
