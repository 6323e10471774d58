package etcdversion

import (
	"strings"
	"testing"
)

func TestFromImage(t *testing.T) {
	cases := map[string]string{
		"registry.k8s.io/etcd:3.5.15-0":                                                          "3.5.15",
		"quay.io/coreos/etcd:v3.3.17":                                                            "3.3.17",
		"gcr.io/etcd-development/etcd:v3.6.0-rc.1":                                               "3.6.0",
		"registry.local:5000/etcd:3.4.23":                                                        "3.4.23",
		"registry.k8s.io/etcd:3.5.9-0@sha256:0123456789abcd":                                     "3.5.9",
		"quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:7e0b4c9bd0d7f5fd08a9e0d4b5e6e2a4": "",
		"registry.local:5000/etcd":                                                               "",
		"etcd:latest":                                                                            "",
		"etcd":                                                                                   "",
	}
	for image, want := range cases {
		v, ok := FromImage(image)
		got := ""
		if ok {
			got = v.String()
		}
		if got != want {
			t.Errorf("FromImage(%q) = %q, want %q", image, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	cases := map[string]string{
		"3.2.32": "is older than",
		"2.3.8":  "is older than",
		"3.3.17": "",
		"3.4.0":  "",
		"3.5.17": "",
		"3.6.16": "",
		"3.7.3":  "",
		"3.8.0":  "is newer than",
		"4.0.0":  "is newer than",
	}
	for s, want := range cases {
		v, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		err = Check(v)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("Check(%s) = %v, want %q", s, err, want)
		}
	}
	if _, err := Parse("latest"); err == nil {
		t.Error("Parse(latest) accepted")
	}
}

func TestCheckBackup(t *testing.T) {
	v := func(s string) Version { x, _ := Parse(s); return x }
	if err := CheckBackup(v("3.6.16"), v("3.7.0")); err == nil {
		t.Error("a 3.7 backup into etcd 3.6 was accepted")
	}
	for _, b := range []string{"3.5.0", "3.6.0", "3.6.16"} {
		if err := CheckBackup(v("3.6.1"), v(b)); err != nil {
			t.Errorf("a %s backup into etcd 3.6.1: %v", b, err)
		}
	}
}
