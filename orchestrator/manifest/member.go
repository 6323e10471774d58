package manifest

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Member is what etcd starts as: the values restore and join set, as
// flags of the etcd command or in the recover block of the environment
// file a start script sources (OpenShift 4.3's /etc/etcd/etcd.conf).
type Member struct {
	Name           string
	InitialCluster string
	// State is the initial cluster state: "new" (a restore) or "existing"
	// (a join).
	State   string
	PeerURL string
}

// memberVars are the recover block's variables, their etcd flags and the
// Member field each holds.
var memberVars = []struct {
	env, flag string
	field     func(*Member) *string
}{
	{"ETCD_NAME", "name", func(c *Member) *string { return &c.Name }},
	{"ETCD_INITIAL_CLUSTER", "initial-cluster", func(c *Member) *string { return &c.InitialCluster }},
	{"ETCD_INITIAL_CLUSTER_STATE", "initial-cluster-state", func(c *Member) *string { return &c.State }},
	{"ETCD_INITIAL_ADVERTISE_PEER_URLS", "initial-advertise-peer-urls", func(c *Member) *string { return &c.PeerURL }},
}

// RecoverMarker starts the block OpenShift's etcd-member-recover.sh appends
// to /etc/etcd/etcd.conf; it runs to the end of the file.
const RecoverMarker = "#[recover]"

// SetMember points the etcd container at c. A command that calls etcd
// directly gets the four flags; a start script has the flags it passes
// itself replaced (name, initial cluster and state; its advertised peer URL
// keeps the script's form), the rest comes from the recover block
// (WithRecoverBlock).
func (m *Manifest) SetMember(c Member) error {
	if !m.ScriptForm() {
		for _, v := range memberVars {
			if err := m.SetFlag(v.flag, *v.field(&c)); err != nil {
				return err
			}
		}
		return nil
	}
	cn, err := m.containerNode()
	if err != nil {
		return err
	}
	node, err := scriptNode(cn)
	if err != nil {
		return err
	}
	for _, v := range memberVars {
		if v.flag == "initial-advertise-peer-urls" {
			continue
		}
		re := scriptFlagRE(v.flag)
		val := *v.field(&c)
		node.Value = re.ReplaceAllStringFunc(node.Value, func(s string) string {
			return re.FindStringSubmatch(s)[1] + val
		})
	}
	return m.refresh()
}

func scriptFlagRE(flag string) *regexp.Regexp {
	return regexp.MustCompile(`(--` + regexp.QuoteMeta(flag) + `[= ])("[^"]*"|\S+)`)
}

// PassesFlag reports whether the etcd container passes etcd the flag itself,
// in its command list or its start script.
func (m *Manifest) PassesFlag(flag string) bool {
	if s, ok := m.script(); ok {
		return regexp.MustCompile(`--` + regexp.QuoteMeta(flag) + `[= ]`).MatchString(s)
	}
	c := m.EtcdContainer()
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if a == "--"+flag || strings.HasPrefix(a, "--"+flag+"=") {
			return true
		}
	}
	return false
}

// WithRecoverBlock returns env, the environment file the start script
// sources, with its recover block replaced by one for c, as the OpenShift
// 4.3 recovery script writes it. A variable whose flag the manifest passes
// itself is left out: etcd 3.6+ stops when a flag shadows a variable.
// Values are double-quoted for the shell that sources the file.
func (m *Manifest) WithRecoverBlock(env []byte, c Member) ([]byte, error) {
	text := string(env)
	if i := strings.Index(text, RecoverMarker); i >= 0 {
		text = text[:i]
	}
	text = strings.TrimRight(text, "\n")
	var b strings.Builder
	if text != "" {
		b.WriteString(text + "\n\n")
	}
	b.WriteString(RecoverMarker + "\n")
	for _, v := range memberVars {
		if m.PassesFlag(v.flag) {
			continue
		}
		val := *v.field(&c)
		if strings.ContainsAny(val, "\"\\$`\n") {
			return nil, fmt.Errorf("%s %q has a character the shell would interpret (\" \\ $ ` or a newline): give a plain value", v.env, val)
		}
		fmt.Fprintf(&b, "%s=\"%s\"\n", v.env, val)
	}
	return []byte(b.String()), nil
}

// ReadRecoverBlock reads the member values of an environment file's
// recover block; ok is false when it has none.
func ReadRecoverBlock(env []byte) (c Member, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == RecoverMarker {
			ok = true
			continue
		}
		k, val, isVar := strings.Cut(l, "=")
		if !ok || !isVar {
			continue
		}
		if uq, err := strconv.Unquote(val); err == nil {
			val = uq
		}
		for _, v := range memberVars {
			if v.env == k {
				*v.field(&c) = val
			}
		}
	}
	return c, ok
}
