package join

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-rescue/etcd-rescue/orchestrator/members"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/signer"
	"github.com/etcd-rescue/etcd-rescue/orchestrator/steps"
)

// client connects to the cluster with the member's own peer certificate.
func (jn *joiner) client() (*clientv3.Client, error) {
	if jn.cli != nil {
		return jn.cli, nil
	}
	c, key := jn.certRel("peer")
	cli, err := members.Dial(members.Creds{Endpoints: jn.o.Endpoints, CACert: jn.abs(jn.prof.CACert), Cert: jn.abs(c), Key: jn.abs(key)})
	if err != nil {
		return nil, err
	}
	jn.cli = cli
	return cli, nil
}

func (jn *joiner) memberAddStep() steps.Step {
	return steps.Step{
		Name: "member-add",
		Describe: func() string {
			if p := jn.present; p != nil {
				return fmt.Sprintf("record %s, already a member (ID %x), and the cluster it joins: %s", jn.m.Name, p.id, p.initialCluster)
			}
			via := "through the signer " + jn.o.Signer
			if jn.o.Signer == "" {
				via = "directly at " + strings.Join(jn.o.Endpoints, ",")
			}
			return fmt.Sprintf("add %s (peer %s) as an etcd learner %s", jn.m.Name, jn.m.PeerURL, via)
		},
		Check: func(ctx context.Context) (steps.State, error) {
			if jn.certsValid() != nil {
				return steps.ToDo, nil // dry run before the certificates exist
			}
			cli, err := jn.client()
			if err != nil {
				return 0, err
			}
			ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			list, err := members.List(ctx, cli)
			if err != nil {
				return 0, fmt.Errorf("%w: etcd at %s does not answer; is the restored master's etcd up and reachable from this master?", err, strings.Join(jn.o.Endpoints, ","))
			}
			req := members.AddRequest{Name: jn.m.Name, PeerURL: jn.m.PeerURL, ReplaceStale: jn.o.ReplaceStale}
			self, stale := members.Classify(list, req)
			if self != nil {
				if jn.j.Notes["initialCluster"] != "" {
					return steps.Done, nil
				}
				// Added by a run that crashed before it noted the member:
				// Run notes what it found.
				jn.present = &presentMember{id: self.ID, initialCluster: members.InitialCluster(list, self.ID, jn.m.Name)}
				return steps.ToDo, nil
			}
			if len(stale) > 0 && !jn.o.ReplaceStale {
				var s []string
				for _, m := range stale {
					s = append(s, m.String())
				}
				return 0, fmt.Errorf("%w: %s; if it is an old master's, run again with --replace-stale to remove it first", members.ErrStale, strings.Join(s, ", "))
			}
			if err := members.CheckPending(list, stale); err != nil {
				return 0, err
			}
			return steps.ToDo, nil
		},
		Run: jn.addMember,
	}
}

func (jn *joiner) noteMember(id uint64, initialCluster string) error {
	if err := jn.j.Note("memberID", fmt.Sprintf("%x", id)); err != nil {
		return err
	}
	return jn.j.Note("initialCluster", initialCluster)
}

// presentMember is this member as member-add's Check found it in the
// cluster before its ID and initial cluster were noted.
type presentMember struct {
	id             uint64
	initialCluster string
}

func (jn *joiner) addMember(ctx context.Context) error {
	if p := jn.present; p != nil {
		return jn.noteMember(p.id, p.initialCluster)
	}
	if jn.o.Signer == "" {
		cli, err := jn.client()
		if err != nil {
			return err
		}
		res, err := members.AddLearner(ctx, cli, members.AddRequest{Name: jn.m.Name, PeerURL: jn.m.PeerURL, ReplaceStale: jn.o.ReplaceStale})
		if err != nil {
			return err
		}
		for _, st := range res.Removed {
			fmt.Fprintf(jn.out, "member-add: removed stale member %s\n", st)
		}
		return jn.noteMember(res.ID, res.InitialCluster)
	}
	trust, err := jn.trust()
	if err != nil {
		return err
	}
	c, key := jn.certRel("peer")
	pair, err := tls.LoadX509KeyPair(jn.abs(c), jn.abs(key))
	if err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	cl, err := signer.NewClient(jn.o.Signer, trust, &pair)
	if err != nil {
		return err
	}
	var resp *signer.MemberResponse
	err = jn.retrySigner(ctx, "member-add", func() (err error) {
		resp, err = cl.AddMember(ctx, signer.MemberRequest{Name: jn.m.Name, PeerURL: jn.m.PeerURL, ReplaceStale: jn.o.ReplaceStale})
		return err
	})
	if err != nil {
		return err
	}
	for _, st := range resp.Removed {
		fmt.Fprintf(jn.out, "member-add: removed stale member %s\n", st)
	}
	id, err := strconv.ParseUint(resp.ID, 16, 64)
	if err != nil {
		return fmt.Errorf("signer returned member ID %q: %w", resp.ID, err)
	}
	return jn.noteMember(id, resp.InitialCluster)
}
