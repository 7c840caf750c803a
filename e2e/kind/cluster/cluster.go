// Package cluster creates and deletes real kind clusters for the end-to-end
// tests, with the node image and pod network that hack/kind/node-image.sh
// builds (offline) or finds (kindest/node, where Docker can pull it).
//
// Every cluster has the same layout: kind's default CNI disabled, the netd
// DaemonSet (hack/kind/netd) as the pod network, the kubelet allowed to run on
// cgroup v1 hosts. Create returns once every node is Ready, CoreDNS is
// available and the default ServiceAccount exists, so pods can be created
// right away.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	kindconfig "sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindlog "sigs.k8s.io/kind/pkg/log"
)

// DefaultPodSubnet is the pod network of a cluster unless Options says
// otherwise. Every cluster may use the same one: their nodes are separate
// containers, and pods never talk to pods of another cluster directly.
const DefaultPodSubnet = "10.244.0.0/16"

// Options describe a cluster to create.
type Options struct {
	// Name of the cluster; nodes are the containers <Name>-control-plane,
	// <Name>-worker, <Name>-worker2, ...
	Name string
	// Workers is the number of worker nodes (0: the control plane runs pods).
	Workers int
	// WorkerLabels[i] are extra labels of worker i (any keys, including
	// kubernetes.io ones the kubelet may not set on itself: they are applied
	// through the API before Create returns).
	WorkerLabels []map[string]string
	// NodeImage defaults to the image hack/kind/node-image.sh reported.
	NodeImage string
	// NetdImage defaults to the one hack/kind/node-image.sh reported.
	NetdImage string
	// PodSubnet defaults to DefaultPodSubnet.
	PodSubnet string
	// KubeconfigPath is where kind writes the cluster's (host) kubeconfig;
	// defaults to DefaultKubeconfigPath(Name).
	KubeconfigPath string
	// Timeout bounds the wait for nodes, CoreDNS and the default
	// ServiceAccount after kind is done (default 5 minutes).
	Timeout time.Duration
	// Log receives kind's progress and this package's; nil discards it.
	Log io.Writer
	// Retain keeps the node containers of a cluster that failed to come up.
	Retain bool
}

// Cluster is a running kind cluster.
type Cluster struct {
	Name string
	// KubeconfigPath is the file holding Kubeconfig.
	KubeconfigPath string
	// Kubeconfig reaches the apiserver from this host (127.0.0.1:<port>).
	Kubeconfig []byte
	// InternalKubeconfig reaches it from any container on the "kind" Docker
	// network, including pods of other kind clusters:
	// https://<Name>-control-plane:6443.
	InternalKubeconfig []byte
	Config             *rest.Config
	Client             kubernetes.Interface
	// Nodes are the node names, control plane first.
	Nodes []string

	log io.Writer
}

// DefaultKubeconfigPath is where Create writes a cluster's kubeconfig when
// Options.KubeconfigPath is empty (never the user's ~/.kube/config).
func DefaultKubeconfigPath(name string) string {
	return filepath.Join(os.TempDir(), "jobset-fleet-kind-"+name+".kubeconfig")
}

// WorkerNodeName is the name kind gives worker i (0-based) of cluster name.
func WorkerNodeName(name string, i int) string {
	if i == 0 {
		return name + "-worker"
	}
	return fmt.Sprintf("%s-worker%d", name, i+1)
}

// ControlPlaneNodeName is the name of the (single) control-plane node.
func ControlPlaneNodeName(name string) string { return name + "-control-plane" }

// Create creates the cluster and waits until it can run pods.
func Create(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Name == "" {
		return nil, fmt.Errorf("kind cluster: a name is required")
	}
	if len(opts.WorkerLabels) > opts.Workers {
		return nil, fmt.Errorf("kind cluster %s: %d worker label sets for %d workers", opts.Name, len(opts.WorkerLabels), opts.Workers)
	}
	if opts.NodeImage == "" || opts.NetdImage == "" {
		imgs, err := BuiltImages()
		if err != nil {
			return nil, err
		}
		if opts.NodeImage == "" {
			opts.NodeImage = imgs.Node
		}
		if opts.NetdImage == "" {
			opts.NetdImage = imgs.Netd
		}
	}
	if opts.PodSubnet == "" {
		opts.PodSubnet = DefaultPodSubnet
	}
	if opts.KubeconfigPath == "" {
		opts.KubeconfigPath = DefaultKubeconfigPath(opts.Name)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}

	cfg := &kindconfig.Cluster{
		TypeMeta: kindconfig.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Nodes:    []kindconfig.Node{{Role: kindconfig.ControlPlaneRole}},
		Networking: kindconfig.Networking{
			DisableDefaultCNI: true,
			PodSubnet:         opts.PodSubnet,
		},
		KubeadmConfigPatches: []string{kubeletPatch, controlPlanePatch},
	}
	for range opts.Workers {
		cfg.Nodes = append(cfg.Nodes, kindconfig.Node{Role: kindconfig.WorkerRole})
	}

	provider := provider(logw)
	fmt.Fprintf(logw, "kind: creating cluster %s (1 control plane, %d workers, image %s)\n", opts.Name, opts.Workers, opts.NodeImage)
	start := time.Now()
	err := provider.Create(opts.Name,
		kindcluster.CreateWithV1Alpha4Config(cfg),
		kindcluster.CreateWithNodeImage(opts.NodeImage),
		kindcluster.CreateWithKubeconfigPath(opts.KubeconfigPath),
		kindcluster.CreateWithRetain(opts.Retain),
		kindcluster.CreateWithDisplayUsage(false),
		kindcluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		return nil, fmt.Errorf("kind create cluster %s: %w%s", opts.Name, err, nodeLogTail(ControlPlaneNodeName(opts.Name)))
	}
	c, err := connect(provider, opts.Name, opts.KubeconfigPath, logw)
	if err == nil {
		err = c.setUp(ctx, opts)
	}
	if err != nil {
		if !opts.Retain {
			_ = provider.Delete(opts.Name, opts.KubeconfigPath)
		}
		return nil, fmt.Errorf("kind cluster %s: %w", opts.Name, err)
	}
	fmt.Fprintf(logw, "kind: cluster %s ready in %s\n", opts.Name, time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

// Connect returns a Cluster for an existing kind cluster (its kubeconfig is
// read from kind, not from a file).
func Connect(name string) (*Cluster, error) {
	return connect(provider(io.Discard), name, DefaultKubeconfigPath(name), io.Discard)
}

func connect(p *kindcluster.Provider, name, kubeconfigPath string, logw io.Writer) (*Cluster, error) {
	external, err := p.KubeConfig(name, false)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	internal, err := p.KubeConfig(name, true)
	if err != nil {
		return nil, fmt.Errorf("internal kubeconfig: %w", err)
	}
	restCfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(external))
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Name:               name,
		KubeconfigPath:     kubeconfigPath,
		Kubeconfig:         []byte(external),
		InternalKubeconfig: []byte(internal),
		Config:             restCfg,
		Client:             client,
		log:                logw,
	}
	ns, err := p.ListNodes(name)
	if err != nil {
		return nil, err
	}
	var workers []string
	for _, n := range ns {
		if n.String() == ControlPlaneNodeName(name) {
			c.Nodes = append(c.Nodes, n.String())
		} else {
			workers = append(workers, n.String())
		}
	}
	sort.Slice(workers, func(i, j int) bool { // worker, worker2, ..., worker10
		if len(workers[i]) != len(workers[j]) {
			return len(workers[i]) < len(workers[j])
		}
		return workers[i] < workers[j]
	})
	c.Nodes = append(c.Nodes, workers...)
	return c, nil
}

func (c *Cluster) setUp(ctx context.Context, opts Options) error {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := c.LoadImages(opts.NetdImage); err != nil {
		return err
	}
	if err := applyNetd(ctx, c.Client, opts.NetdImage, opts.PodSubnet); err != nil {
		return fmt.Errorf("netd: %w", err)
	}
	for i, labels := range opts.WorkerLabels {
		if err := c.Label(ctx, WorkerNodeName(c.Name, i), labels); err != nil {
			return err
		}
	}
	return waitReady(ctx, c.Client, 1+opts.Workers, c.log)
}

// Label merges labels into node's labels.
func (c *Cluster) Label(ctx context.Context, node string, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	patch := map[string]any{"metadata": map[string]any{"labels": labels}}
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = c.Client.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, data, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("label node %s: %w", node, err)
	}
	return nil
}

// LoadImages copies local Docker images into every node of the cluster.
func (c *Cluster) LoadImages(images ...string) error { return LoadImages(c.Name, images...) }

// Delete deletes the cluster and its kubeconfig file.
func (c *Cluster) Delete() error {
	err := provider(io.Discard).Delete(c.Name, c.KubeconfigPath)
	_ = os.Remove(c.KubeconfigPath)
	return err
}

// Delete deletes the named cluster (and the kubeconfig Create wrote by
// default). Deleting a cluster that does not exist is not an error.
func Delete(name string) error {
	path := DefaultKubeconfigPath(name)
	err := provider(io.Discard).Delete(name, path)
	_ = os.Remove(path)
	return err
}

// List returns the names of the kind clusters on this host.
func List() ([]string, error) { return provider(io.Discard).List() }

// InternalKubeconfig returns a kubeconfig for the named cluster whose server
// is https://<name>-control-plane:6443: usable from any container on the kind
// Docker network, including pods of other kind clusters (their nodes resolve
// container names through Docker's DNS).
func InternalKubeconfig(name string) ([]byte, error) {
	s, err := provider(io.Discard).KubeConfig(name, true)
	return []byte(s), err
}

// LoadImages copies local Docker images into every node of the named
// cluster, skipping nodes that already have the same image ID.
func LoadImages(name string, images ...string) error {
	ns, err := provider(io.Discard).ListNodes(name)
	if err != nil {
		return err
	}
	if len(ns) == 0 {
		return fmt.Errorf("kind cluster %s has no nodes", name)
	}
	for _, image := range images {
		if err := loadImage(ns, image); err != nil {
			return err
		}
	}
	return nil
}

func loadImage(ns []nodes.Node, image string) error {
	id, err := output("docker", "image", "inspect", "-f", "{{.Id}}", image)
	if err != nil {
		return fmt.Errorf("image %s is not in the local Docker: %w", image, err)
	}
	var missing []nodes.Node
	for _, n := range ns {
		if have, err := nodeutils.ImageID(n, image); err != nil || have != id {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	f, err := os.CreateTemp("", "jobset-fleet-kind-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	save := exec.Command("docker", "save", image)
	save.Stdout = f
	var stderr bytes.Buffer
	save.Stderr = &stderr
	if err := save.Run(); err != nil {
		return fmt.Errorf("docker save %s: %v: %s", image, err, stderr.String())
	}
	var wg sync.WaitGroup
	errs := make([]error, len(missing))
	for i, n := range missing {
		wg.Go(func() {
			r, err := os.Open(f.Name())
			if err != nil {
				errs[i] = err
				return
			}
			defer r.Close()
			if err := nodeutils.LoadImageArchive(n, r); err != nil {
				errs[i] = fmt.Errorf("load %s into %s: %w", image, n.String(), err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func provider(w io.Writer) *kindcluster.Provider {
	return kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(writerLogger{w}))
}

// nodeLogTail is the end of a node container's log, for errors.
func nodeLogTail(container string) string {
	out, err := exec.Command("docker", "logs", "--tail", "40", container).CombinedOutput()
	if err != nil || len(out) == 0 {
		return ""
	}
	return "\n--- docker logs " + container + " (tail) ---\n" + string(out)
}

func output(name string, args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// kubeletPatch: kubelet >= 1.35 refuses cgroup v1 hosts unless told
// otherwise.
const kubeletPatch = `kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
failCgroupV1: false
`

// controlPlanePatch keeps a starved control plane from tearing itself down
// (seen with three clusters on 2 cores): with one control-plane node there
// is nothing to elect, and a controller-manager or scheduler that misses a
// lease renewal while the apiserver is slow exits and relists everything,
// which makes it slower still. etcd's fsyncs protect nothing a test cluster
// needs and stall every write when the disk is busy.
const controlPlanePatch = `kind: ClusterConfiguration
apiVersion: kubeadm.k8s.io/v1beta4
controllerManager:
  extraArgs:
  - name: leader-elect
    value: "false"
scheduler:
  extraArgs:
  - name: leader-elect
    value: "false"
etcd:
  local:
    extraArgs:
    - name: unsafe-no-fsync
      value: "true"
`

// writerLogger adapts an io.Writer to kind's logger (info up to V(1)).
type writerLogger struct{ w io.Writer }

func (l writerLogger) Warn(m string)             { fmt.Fprintln(l.w, "kind: WARN:", m) }
func (l writerLogger) Warnf(f string, a ...any)  { l.Warn(fmt.Sprintf(f, a...)) }
func (l writerLogger) Error(m string)            { fmt.Fprintln(l.w, "kind: ERROR:", m) }
func (l writerLogger) Errorf(f string, a ...any) { l.Error(fmt.Sprintf(f, a...)) }
func (l writerLogger) V(v kindlog.Level) kindlog.InfoLogger {
	if v > 0 {
		return kindlog.NoopInfoLogger{}
	}
	return writerInfo(l)
}

type writerInfo writerLogger

func (l writerInfo) Enabled() bool            { return true }
func (l writerInfo) Info(m string)            { fmt.Fprintln(l.w, "kind:", strings.TrimSpace(m)) }
func (l writerInfo) Infof(f string, a ...any) { l.Info(fmt.Sprintf(f, a...)) }
