package plan

import (
	"fmt"
	"strings"
	"testing"
)

func TestLUKSField(t *testing.T) {
	base := "version: 1\ncluster: {name: c}\nsurvivor: m0\nmembers:\n- {name: m0, peerURL: \"https://192.0.2.10:2380\", luks: %s}\n"
	p, err := Parse([]byte(fmt.Sprintf(base, "{passphraseFile: /etc/etcd-rescue/luks.pass, keyFile: /etc/etcd-rescue/luks.key}")))
	if err != nil {
		t.Fatal(err)
	}
	if l := p.Members[0].LUKS; l == nil || l.PassphraseFile != "/etc/etcd-rescue/luks.pass" || l.KeyFile != "/etc/etcd-rescue/luks.key" {
		t.Errorf("luks = %+v", p.Members[0].LUKS)
	}
	for field, want := range map[string]string{
		"{}":                                  "luks names no file",
		"{keyFile: /root/key}":                `luks.keyFile "/root/key" is not a file under /etc/etcd-rescue/`,
		"{passphraseFile: /etc/etcd-rescue/}": "luks.passphraseFile",
		"{keyFile: /etc/etcd-rescue/../x}":    "is not a file under",
		"{key: /etc/etcd-rescue/k}":           "unknown field",
	} {
		if _, err := Parse([]byte(fmt.Sprintf(base, field))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("luks: %s: got %v, want %q", field, err, want)
		}
	}
}
