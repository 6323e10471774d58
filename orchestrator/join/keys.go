package join

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/internal/pki"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

func (jn *joiner) keysStep() steps.Step {
	missing := func() []string {
		var out []string
		for _, k := range jn.kinds {
			_, key := jn.certRel(k)
			if !jn.ours(key) {
				out = append(out, k)
			}
		}
		return out
	}
	return steps.Step{
		Name: "keys",
		Describe: func() string {
			return fmt.Sprintf("generate ECDSA P-256 keys for %s certificates of %s", strings.Join(missing(), ", "), jn.m.Name)
		},
		Check: func(context.Context) (steps.State, error) {
			if len(missing()) == 0 {
				return steps.Done, nil
			}
			return steps.ToDo, nil
		},
		Run: func(context.Context) error {
			for _, k := range missing() {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					return err
				}
				b, err := pki.MarshalKeyPEM(key)
				if err != nil {
					return err
				}
				_, rel := jn.certRel(k)
				if err := jn.writeOurs(rel, b, 0o600); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
