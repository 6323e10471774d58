// Package live stops and starts what runs etcd on a live master: the static
// pods' containers, through the CRI of CRI-O or containerd over its unix
// socket, and the kubelet, through systemd over D-Bus.
package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultCRIEndpoints are the sockets of CRI-O and containerd, tried in order.
var DefaultCRIEndpoints = []string{
	"/run/crio/crio.sock",
	"/run/containerd/containerd.sock",
	"/var/run/crio/crio.sock",
	"/var/run/containerd/containerd.sock",
}

// PodRef names a static pod as its manifest does; its containers carry
// io.kubernetes.pod.name "<name>-<node>" and io.kubernetes.pod.namespace.
type PodRef struct {
	Namespace, Name string
}

func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// CRI talks to the container runtime.
type CRI struct {
	Endpoint string
	client   runtimeapi.RuntimeServiceClient
	conn     *grpc.ClientConn
	// Out receives progress lines.
	Out io.Writer
	// Poll is how often the runtime is asked. Default 2s.
	Poll time.Duration
	// Grace is how long the kubelet gets to stop a pod's containers before
	// they are stopped through the CRI. Default 60s.
	Grace time.Duration
	// Timeout bounds the whole wait. Default 5m.
	Timeout time.Duration
}

// DialCRI connects to the first endpoint that exists (or the given one)
// and checks that a CRI runtime answers there.
func DialCRI(ctx context.Context, endpoint string) (*CRI, error) {
	candidates := DefaultCRIEndpoints
	if endpoint != "" {
		candidates = []string{strings.TrimPrefix(endpoint, "unix://")}
	}
	var errs []error
	for _, sock := range candidates {
		if _, err := os.Stat(sock); err != nil {
			errs = append(errs, err)
			continue
		}
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c := &CRI{Endpoint: sock, conn: conn, client: runtimeapi.NewRuntimeServiceClient(conn)}
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := c.client.Version(vctx, &runtimeapi.VersionRequest{})
		cancel()
		if err != nil {
			conn.Close()
			errs = append(errs, fmt.Errorf("%s: %w", sock, err))
			continue
		}
		_ = v
		return c, nil
	}
	return nil, fmt.Errorf("no container runtime answers on %s: %w (pass --cri-endpoint)", strings.Join(candidates, ", "), errors.Join(errs...))
}

// Close closes the connection.
func (c *CRI) Close() error { return c.conn.Close() }

func (c *CRI) defaults() {
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Poll == 0 {
		c.Poll = 2 * time.Second
	}
	if c.Grace == 0 {
		c.Grace = 60 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Minute
	}
}

// Running lists the running containers of the pods (container names with
// their pod), sorted.
func (c *CRI) Running(ctx context.Context, pods []PodRef) ([]*runtimeapi.Container, error) {
	resp, err := c.client.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}},
	})
	if err != nil {
		return nil, fmt.Errorf("list containers on %s: %w", c.Endpoint, err)
	}
	var out []*runtimeapi.Container
	for _, ctr := range resp.Containers {
		if ctr.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		ns, name := ctr.Labels["io.kubernetes.pod.namespace"], ctr.Labels["io.kubernetes.pod.name"]
		for _, p := range pods {
			if ns == p.Namespace && (name == p.Name || strings.HasPrefix(name, p.Name+"-")) {
				out = append(out, ctr)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return describe(out[i]) < describe(out[j]) })
	return out, nil
}

func describe(c *runtimeapi.Container) string {
	name := c.Id
	if c.Metadata != nil {
		name = c.Metadata.Name
	}
	return c.Labels["io.kubernetes.pod.name"] + "/" + name
}

// WaitPodsGone waits until no container of the pods runs. The kubelet stops
// them once their manifests are gone; after Grace, the ones still running
// are stopped through the CRI, as the OpenShift 4.3 restore does with
// crictl stop.
func (c *CRI) WaitPodsGone(ctx context.Context, pods []PodRef) error {
	c.defaults()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	stopped := false
	for {
		running, err := c.Running(ctx, pods)
		if err != nil {
			return err
		}
		if len(running) == 0 {
			fmt.Fprintf(c.Out, "    all containers of %v are gone (%s)\n", pods, time.Since(start).Round(time.Second))
			return nil
		}
		var names []string
		for _, r := range running {
			names = append(names, describe(r))
		}
		if !stopped && time.Since(start) >= c.Grace {
			fmt.Fprintf(c.Out, "    still running after %s: %s; stopping them through %s\n", c.Grace, strings.Join(names, ", "), c.Endpoint)
			for _, r := range running {
				if _, err := c.client.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: r.Id, Timeout: 30}); err != nil {
					return fmt.Errorf("stop container %s: %w", describe(r), err)
				}
			}
			stopped = true
			continue
		}
		fmt.Fprintf(c.Out, "    waiting for %s to stop (%s)\n", strings.Join(names, ", "), time.Since(start).Round(time.Second))
		select {
		case <-ctx.Done():
			return fmt.Errorf("containers still running after %s: %s; stop them (crictl stop) and re-run", c.Timeout, strings.Join(names, ", "))
		case <-time.After(c.Poll):
		}
	}
}
