package kindfleet_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindexec "sigs.k8s.io/kind/pkg/exec"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/kind/cluster"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

const (
	hubName = "hub"
	// hubServer is the hub's apiserver as member pods reach it: its kind
	// node's name on the Docker network the clusters share.
	hubServer = "https://hub-control-plane:6443"
	// rackLabel is the workers' topology label (the agents report its
	// domains: --topology-keys in overlays/agent).
	rackLabel = "rack"
	// poolLabel is a ClusterProfile label every member gets at join, for
	// JobSets that may run on either member (cluster-selector).
	poolLabel = "e2e.jobset-fleet.io/pool"
	poolValue = "kind"

	// runNodeImage is this harness's tag of the node image it runs.
	runNodeImage = "jobset-fleet/kind-node:kindfleet"

	// readmeMember is installed and joined by the README's install block
	// (readmeMarker), run word for word; helmMember by the agent chart of
	// the release and the token join.
	readmeMember = "member-1"
	helmMember   = "member-2"
	// readmeMarker is the line right before the README's install block.
	readmeMarker = "<!-- e2e: install -->"

	systemNamespace = "jobset-fleet-system"
	hubDeployment   = "jobset-fleet-hub"
	agentDeployment = "jobset-fleet-agent"
	agentReplicas   = 2
)

var memberNames = []string{readmeMember, helmMember}

// kindCluster is one cluster of the fleet, as the tests reach it.
type kindCluster struct {
	name string
	// context is the cluster's context in env.kubeconfig.
	context string
	cfg     *rest.Config
	c       client.Client
	cs      kubernetes.Interface
}

// fleetEnv is the running fleet.
type fleetEnv struct {
	root       string
	kubeconfig string // every cluster, contexts hub, member-1, member-2
	kubectl    string
	hub        *kindCluster
	members    map[string]*kindCluster
	images     struct{ hub, agent, workload string }
	// dist is the release the fleet is installed from (make release), of
	// the version the README's install block exports.
	dist    string
	version string
	logDir  string
	// reused are the clusters kept from an earlier run (KEEP_CLUSTERS=1).
	reused map[string]bool
}

var env *fleetEnv

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("JOBSET_FLEET_E2E_KIND") != "1" {
		fmt.Println("kindfleet: skipped; needs Docker. Run `make e2e-kind` (sets JOBSET_FLEET_E2E_KIND=1).")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	keep := os.Getenv("KEEP_CLUSTERS") == "1"
	start := time.Now()
	var teardownOnce sync.Once
	teardown := func() {
		teardownOnce.Do(func() {
			if keep {
				if kc := env.kubeconfigOrEmpty(); kc != "" {
					progress(start, "keeping the clusters (KEEP_CLUSTERS=1):\n\n    export KUBECONFIG=%s   # contexts: hub, member-1, member-2\n", kc)
				} else {
					progress(start, "keeping the clusters (KEEP_CLUSTERS=1)")
				}
				return
			}
			progress(start, "deleting the clusters")
			for _, name := range append([]string{hubName}, memberNames...) {
				if err := cluster.Delete(name); err != nil {
					fmt.Fprintf(os.Stderr, "kindfleet: deleting cluster %s: %v\n", name, err)
				}
			}
		})
	}
	// An interrupt or the test binary's timeout must not leave clusters
	// behind: neither runs deferred functions.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "kindfleet: %s: tearing down\n", s)
			cancel()
			teardown()
			os.Exit(130)
		case <-ctx.Done():
		}
	}()
	if d := testTimeout(); d > 0 {
		watchdog := time.AfterFunc(d-time.Minute, func() {
			fmt.Fprintf(os.Stderr, "kindfleet: about to hit the test timeout (%s): collecting logs and tearing down\n", d)
			env.dumpDiagnostics(context.Background())
			teardown()
			os.Exit(1)
		})
		defer watchdog.Stop()
	}
	defer teardown()

	e, err := setUp(ctx, start, keep)
	env = e
	if err != nil {
		fmt.Fprintf(os.Stderr, "kindfleet: setting up the fleet failed: %v\n", err)
		env.dumpDiagnostics(context.Background())
		return 1
	}
	progress(start, "fleet ready; running the tests")
	testsStart := time.Now()
	code := m.Run()
	progress(start, "tests done in %s (exit %d)", time.Since(testsStart).Round(time.Second), code)
	if code != 0 {
		env.dumpDiagnostics(context.Background())
	}
	return code
}

// testTimeout is go test's -timeout, if any.
func testTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	d, _ := time.ParseDuration(f.Value.String())
	return d
}

// progress prints a step of the set-up with the time since start.
func progress(start time.Time, format string, args ...any) {
	el := time.Since(start).Round(time.Second)
	fmt.Printf("==> [%02d:%02d] %s\n", int(el.Minutes()), int(el.Seconds())%60, fmt.Sprintf(format, args...))
}

// prefixed writes each line it receives to stdout behind a prefix.
type prefixed struct {
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		fmt.Printf("    %s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func setUp(ctx context.Context, start time.Time, keep bool) (*fleetEnv, error) {
	root := testenv.RepoRoot()
	e := &fleetEnv{root: root, members: map[string]*kindCluster{}, reused: map[string]bool{}}
	// The README's install block is what installs the hub and readmeMember:
	// read now, so that a README edit is what this run tests.
	block, err := readmeInstallBlock(filepath.Join(root, "README.md"))
	if err != nil {
		return e, err
	}
	if e.version, err = exportedValue(block, "VERSION"); err != nil {
		return e, err
	}
	// member-2's token join must name the hub as the block's join does.
	if server, err := exportedValue(block, "HUB_SERVER"); err != nil {
		return e, err
	} else if server != hubServer {
		return e, fmt.Errorf("README.md's install block exports HUB_SERVER=%s, the kind hub is %s", server, hubServer)
	}
	// The release's image references (install-*.yaml, the charts' appVersion).
	e.images.hub = "jobset-fleet/hub:" + e.version
	e.images.agent = "jobset-fleet/agent:" + e.version
	e.images.workload = envOr("IMG_WORKLOAD", "jobset-fleet/workload:dev")
	e.kubectl = filepath.Join(root, "bin", "kubectl")
	if _, err := os.Stat(e.kubectl); err != nil {
		if e.kubectl, err = exec.LookPath("kubectl"); err != nil {
			return e, errors.New("no kubectl: run `hack/tools.sh kubectl` (builds bin/kubectl) or put one on PATH")
		}
	}
	dir := filepath.Join(root, "bin", "e2e-kind")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return e, err
	}
	e.logDir = filepath.Join(dir, "logs")
	_ = os.RemoveAll(e.logDir)

	progress(start, "Docker and the kind node image (hack/kind/node-image.sh)")
	imgs, err := cluster.EnsureImages(ctx, &prefixed{prefix: "node-image: "})
	if err != nil {
		return e, err
	}
	// A tag of our own for this run: a concurrent rebuild of the node image
	// (another checkout, a developer) re-tags and drops the shared one.
	if out, err := exec.CommandContext(ctx, "docker", "tag", imgs.Node, runNodeImage).CombinedOutput(); err != nil {
		return e, fmt.Errorf("docker tag %s %s: %w\n%s", imgs.Node, runNodeImage, err, out)
	}
	progress(start, "node image %s (as %s)", imgs.Node, runNodeImage)
	imgs.Node = runNodeImage

	// The release as a user downloads it (images as tarballs, rendered
	// YAML, binaries, charts), in a dist/ of the harness's own so that a
	// release in the checkout's dist/ is left alone; bin/'s binaries, which
	// the token join and the tests run, the workload image, which no
	// release ships, and the kind CLI the README's block calls.
	e.dist = filepath.Join(dir, "dist")
	progress(start, "make release VERSION=%s (the README's; DIST=%s), make build, the workload image, kind", e.version, e.dist)
	rel := exec.CommandContext(ctx, filepath.Join(root, "hack", "release.sh"))
	rel.Env = append(os.Environ(), "VERSION="+e.version, "DIST="+e.dist)
	rel.Stdout, rel.Stderr = &prefixed{prefix: "release: "}, &prefixed{prefix: "release: "}
	if err := rel.Run(); err != nil {
		return e, fmt.Errorf("hack/release.sh: %w", err)
	}
	mk := exec.CommandContext(ctx, "make", "-C", root, "--no-print-directory", "build")
	mk.Stdout, mk.Stderr = &prefixed{prefix: "make: "}, &prefixed{prefix: "make: "}
	if err := mk.Run(); err != nil {
		return e, fmt.Errorf("make build: %w", err)
	}
	img := exec.CommandContext(ctx, filepath.Join(root, "hack", "images", "build.sh"), "workload="+e.images.workload)
	img.Stdout, img.Stderr = &prefixed{prefix: "images: "}, &prefixed{prefix: "images: "}
	if err := img.Run(); err != nil {
		return e, fmt.Errorf("hack/images/build.sh workload=%s: %w", e.images.workload, err)
	}
	pathDir, err := readmeTools(ctx, root, e.kubectl, filepath.Join(dir, "path"))
	if err != nil {
		return e, err
	}

	progress(start, "creating the clusters hub, %s", strings.Join(memberNames, ", "))
	existing, err := cluster.List()
	if err != nil {
		return e, fmt.Errorf("listing kind clusters: %w", err)
	}
	names := append([]string{hubName}, memberNames...)
	kinds := make([]*cluster.Cluster, len(names))
	reused := make([]bool, len(names))
	// One at a time: on two cores, three control planes starting together
	// starve each other past kubeadm's timeouts.
	for i, name := range names {
		var err error
		kinds[i], reused[i], err = createCluster(ctx, start, name, imgs, keep && slices.Contains(existing, name), slices.Contains(existing, name))
		if err != nil {
			return e, err
		}
	}
	for i, name := range names {
		e.reused[name] = reused[i]
	}
	if err := e.connect(kinds, dir); err != nil {
		return e, err
	}

	progress(start, "the README's install block (hub, %s) in a copy of the release outside the checkout; meanwhile the images of %s and the workload image", readmeMember, helmMember)
	var g errgroup.Group
	g.Go(func() error { return e.runReadmeBlock(ctx, block, pathDir) })
	g.Go(func() error {
		var lg errgroup.Group
		lg.Go(func() error { return e.loadImageArchive(helmMember, "agent") })
		for _, m := range memberNames {
			lg.Go(func() error { return cluster.LoadImages(m, e.images.workload) })
		}
		if err := lg.Wait(); err != nil {
			return fmt.Errorf("loading images: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return e, err
	}

	// What the tests need beyond the README: the e2e components (short
	// timeouts) over what the block applied, and the pool label the token
	// join gives helmMember.
	progress(start, "the e2e components over the block's install (hub, then %s); the label %s=%s on %s", readmeMember, poolLabel, poolValue, readmeMember)
	if _, err := e.kubectlCmd(ctx, e.hub, nil, "-n", fleet.DefaultInventoryNamespace, "label", "--overwrite",
		"clusterprofile/"+readmeMember, poolLabel+"="+poolValue); err != nil {
		return e, err
	}
	if err := e.install(ctx, e.hub, "hub", hubDeployment); err != nil {
		return e, err
	}
	ig, gctx := errgroup.WithContext(ctx)
	ig.Go(func() error { return e.install(gctx, e.members[readmeMember], "agent", agentDeployment) })
	ig.Go(func() error {
		progress(start, "joining %s: jobset-fleet-agent token create, then join --token; the agent chart of the release", helmMember)
		if err := e.join(gctx, helmMember); err != nil {
			return err
		}
		return e.helmInstallAgent(gctx, e.members[helmMember])
	})
	if err := ig.Wait(); err != nil {
		return e, err
	}
	if err := e.agentsAgree(ctx); err != nil {
		return e, err
	}

	progress(start, "waiting for both members to be healthy on the hub")
	for _, m := range memberNames {
		if err := e.waitMemberHealthy(ctx, m, 3*time.Minute); err != nil {
			return e, err
		}
	}
	return e, nil
}

// readmeInstallBlock is the shell block right after the line readmeMarker
// in the README: the marker exactly once, then a line "```sh", then the
// block up to the next line "```".
func readmeInstallBlock(readme string) (string, error) {
	data, err := os.ReadFile(readme)
	if err != nil {
		return "", err
	}
	lines := strings.Split(string(data), "\n")
	at := -1
	for i, l := range lines {
		if strings.TrimRight(l, " \r") != readmeMarker {
			continue
		}
		if at >= 0 {
			return "", fmt.Errorf("%s: %q on lines %d and %d: want it once, right before the install block", readme, readmeMarker, at+1, i+1)
		}
		at = i
	}
	if at < 0 {
		return "", fmt.Errorf("%s: no line %q (it marks the install block e2e/kindfleet runs)", readme, readmeMarker)
	}
	if at+1 >= len(lines) || strings.TrimRight(lines[at+1], " \r") != "```sh" {
		return "", fmt.Errorf("%s:%d: want \"```sh\" right after %q", readme, at+2, readmeMarker)
	}
	for i := at + 2; i < len(lines); i++ {
		if strings.TrimRight(lines[i], " \r") == "```" {
			if i == at+2 {
				return "", fmt.Errorf("%s:%d: the install block is empty", readme, at+2)
			}
			return strings.Join(lines[at+2:i], "\n") + "\n", nil
		}
	}
	return "", fmt.Errorf("%s:%d: the install block is not closed by a line \"```\"", readme, at+2)
}

// exportedValue is the value of the block's one line `export NAME=value`
// (a plain word: no quotes, no expansion).
func exportedValue(block, name string) (string, error) {
	re := regexp.MustCompile(`(?m)^export ` + regexp.QuoteMeta(name) + `=([^\s'"$#]+)(?:\s|$)`)
	ms := re.FindAllStringSubmatch(block, -1)
	if len(ms) != 1 {
		return "", fmt.Errorf("README.md's install block: want one line `export %s=value` (a plain word), found %d", name, len(ms))
	}
	return ms[0][1], nil
}

// readmeTools fills dir with what the README's block runs besides the
// release and the shell's basics: kubectl (bin/'s) and the kind CLI, built
// from the kind module this harness uses.
func readmeTools(ctx context.Context, root, kubectl, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "kind"), "sigs.k8s.io/kind")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build sigs.k8s.io/kind: %w\n%s", err, out)
	}
	link := filepath.Join(dir, "kubectl")
	_ = os.Remove(link)
	if err := os.Symlink(kubectl, link); err != nil {
		return "", err
	}
	return dir, nil
}

// runReadmeBlock runs the README's install block with bash, word for word
// and stopping at the first failing command, in a new directory outside the
// checkout that holds a copy of the release and nothing else: PATH has
// kind and kubectl (tools) first, KUBECONFIG the fleet's contexts, and
// VERSION and HUB_SERVER are what the block exports.
func (e *fleetEnv) runReadmeBlock(ctx context.Context, block, tools string) error {
	work, err := os.MkdirTemp("", "kindfleet-readme-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if rel, err := filepath.Rel(e.root, work); err != nil || !strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s is inside the checkout %s: set TMPDIR elsewhere", work, e.root)
	}
	files, err := os.ReadDir(e.dist)
	if err != nil {
		return err
	}
	for _, f := range files {
		if !f.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(e.dist, f.Name()), filepath.Join(work, f.Name())); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euxo", "pipefail", "-c", block)
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + tools + string(os.PathListSeparator) + os.Getenv("PATH"), "KUBECONFIG=" + e.kubeconfig}
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "PATH", "KUBECONFIG", "VERSION", "HUB_SERVER":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out := &prefixed{prefix: "readme: "}
	cmd.Stdout, cmd.Stderr = out, out
	// The block's commands (kubectl waiting, kind loading) go with bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("README.md's install block (after %q), run with bash -euxo pipefail in %s: %w (its output is above, prefixed readme:)", readmeMarker, work, err)
	}
	return nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// createCluster creates one cluster of the fleet, or reuses it. A cluster
// that fails to come up (on a loaded machine an apiserver may restart while
// it is being set up) is deleted and created once more.
func createCluster(ctx context.Context, start time.Time, name string, imgs cluster.Images, reuse, exists bool) (*cluster.Cluster, bool, error) {
	if reuse {
		c, err := cluster.Connect(name)
		if err == nil {
			progress(start, "cluster %s: reusing (KEEP_CLUSTERS=1)", name)
			return c, true, nil
		}
		progress(start, "cluster %s: cannot reuse (%v): recreating", name, err)
	}
	if exists {
		if err := cluster.Delete(name); err != nil {
			return nil, false, fmt.Errorf("deleting stale cluster %s: %w", name, err)
		}
	}
	opts := cluster.Options{
		Name: name, NodeImage: imgs.Node, NetdImage: imgs.Netd, Log: &prefixed{prefix: name + ": "},
		// Nodes, CoreDNS and the default ServiceAccount: a minute on an idle
		// machine, much longer on a loaded one.
		Timeout: 10 * time.Minute,
	}
	var racks []map[string]string
	if name != hubName {
		// Two workers, each its own rack. Labelled once Create has seen
		// every node Ready: a worker may register only after kind's join.
		opts.Workers = 2
		racks = []map[string]string{{rackLabel: name + "-rack-a"}, {rackLabel: name + "-rack-b"}}
	}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		c, err := cluster.Create(ctx, opts)
		for i := 0; err == nil && i < len(racks); i++ {
			err = c.Label(ctx, cluster.WorkerNodeName(name, i), racks[i])
		}
		if err == nil {
			progress(start, "cluster %s: ready", name)
			return c, false, nil
		}
		if out := kindOutput(err); out != "" {
			fmt.Printf("    %s: the failed command's output (tail):\n%s\n", name, out)
		}
		if attempt == attempts || ctx.Err() != nil {
			return nil, false, err
		}
		progress(start, "cluster %s: failed to come up, creating it again: %v", name, err)
		_ = cluster.Delete(name)
	}
}

// kindOutput is the output of the command a kind error reports (kubeadm's,
// say), which the error message leaves out.
func kindOutput(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if re := kindexec.RunErrorForError(e); re != nil {
			return tail(string(re.Output), 30)
		}
	}
	return ""
}

// connect writes one kubeconfig with the contexts hub, member-1 and
// member-2 and builds the clients of each cluster.
func (e *fleetEnv) connect(kinds []*cluster.Cluster, dir string) error {
	merged := clientcmdapi.NewConfig()
	for _, k := range kinds {
		cfg, err := clientcmd.Load(k.Kubeconfig)
		if err != nil {
			return fmt.Errorf("kubeconfig of %s: %w", k.Name, err)
		}
		kctx := cfg.Contexts[cfg.CurrentContext]
		if kctx == nil {
			return fmt.Errorf("kubeconfig of %s has no current context", k.Name)
		}
		merged.Clusters[k.Name] = cfg.Clusters[kctx.Cluster]
		merged.AuthInfos[k.Name] = cfg.AuthInfos[kctx.AuthInfo]
		merged.Contexts[k.Name] = &clientcmdapi.Context{Cluster: k.Name, AuthInfo: k.Name}
		merged.CurrentContext = hubName

		restCfg := rest.CopyConfig(k.Config)
		restCfg.QPS, restCfg.Burst = 100, 200
		c, err := client.New(restCfg, client.Options{Scheme: testenv.Scheme()})
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return err
		}
		kc := &kindCluster{name: k.Name, context: k.Name, cfg: restCfg, c: c, cs: cs}
		if k.Name == hubName {
			e.hub = kc
		} else {
			e.members[k.Name] = kc
		}
	}
	e.kubeconfig = filepath.Join(dir, "kubeconfig")
	return clientcmd.WriteToFile(*merged, e.kubeconfig)
}

func (e *fleetEnv) kubeconfigOrEmpty() string {
	if e == nil {
		return ""
	}
	return e.kubeconfig
}

// kubectlCmd runs kubectl against one cluster of the fleet.
func (e *fleetEnv) kubectlCmd(ctx context.Context, kc *kindCluster, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.kubectl, append([]string{"--kubeconfig", e.kubeconfig, "--context", kc.context}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kubectl --context %s %s: %w\n%s", kc.context, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// install applies the release's install-<what>.yaml with the e2e component
// of e2e/kindfleet/overlays/<what> (short timeouts), server-side as the
// README does, and waits for its Deployment to roll out.
func (e *fleetEnv) install(ctx context.Context, kc *kindCluster, what, deployment string) error {
	dir, err := os.MkdirTemp("", "kindfleet-"+what+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	manifest, err := os.ReadFile(filepath.Join(e.dist, "install-"+what+".yaml"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "install.yaml"), manifest, 0o644); err != nil {
		return err
	}
	// kustomize takes no absolute paths, and the component is a directory
	// outside this one: a relative path reaches it.
	component, err := filepath.Rel(dir, filepath.Join(e.root, "e2e", "kindfleet", "overlays", what))
	if err != nil {
		return err
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- install.yaml
components:
- %s
`, component)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		return err
	}
	if _, err := e.kubectlCmd(ctx, kc, nil, "apply", "--server-side", "-k", dir); err != nil {
		return err
	}
	return e.rollOut(ctx, kc, deployment)
}

// helmInstallAgent installs the release's agent chart, with the flags of
// the e2e component (overlays/agent/values.yaml), as the README's Helm
// section does after join.
func (e *fleetEnv) helmInstallAgent(ctx context.Context, kc *kindCluster) error {
	chart := filepath.Join(e.dist, "jobset-fleet-agent-"+strings.TrimPrefix(e.version, "v")+".tgz")
	home, err := os.MkdirTemp("", "kindfleet-helm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	cmd := exec.CommandContext(ctx, filepath.Join(e.root, "bin", "helm"), "upgrade", "--install", "jobset-fleet-agent", chart,
		"--kubeconfig", e.kubeconfig, "--kube-context", kc.context, "--namespace", systemNamespace,
		"--values", filepath.Join(e.root, "e2e", "kindfleet", "overlays", "agent", "values.yaml"))
	// Independent of the user's Helm setup.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm install %s on %s: %w\n%s", filepath.Base(chart), kc.name, err, out)
	}
	return e.rollOut(ctx, kc, agentDeployment)
}

// rollOut waits for a Deployment to roll out; on a reused cluster it
// restarts it first, since the previous build ran under the same tag.
func (e *fleetEnv) rollOut(ctx context.Context, kc *kindCluster, deployment string) error {
	if e.reused[kc.name] {
		if _, err := e.kubectlCmd(ctx, kc, nil, "-n", systemNamespace, "rollout", "restart", "deployment/"+deployment); err != nil {
			return err
		}
	}
	if _, err := e.kubectlCmd(ctx, kc, nil, "-n", systemNamespace, "rollout", "status", "deployment/"+deployment, "--timeout=5m"); err != nil {
		return fmt.Errorf("%s on %s did not roll out: %w", deployment, kc.name, err)
	}
	return nil
}

// agentsAgree fails when the agents the two install paths made run with
// other images or arguments: the tests assume one agent configuration.
func (e *fleetEnv) agentsAgree(ctx context.Context) error {
	var first, firstMember string
	for _, m := range memberNames {
		out, err := e.kubectlCmd(ctx, e.members[m], nil, "-n", systemNamespace, "get", "deployment/"+agentDeployment,
			"-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].args}")
		if err != nil {
			return err
		}
		if firstMember == "" {
			first, firstMember = out, m
		} else if out != first {
			return fmt.Errorf("the agents differ: %s runs %s, %s runs %s (e2e/kindfleet/overlays/agent: kustomization.yaml and values.yaml must give the same flags)", firstMember, first, m, out)
		}
	}
	return nil
}

// loadImageArchive loads the release's image tarball of a component into
// every node of a cluster, as kind load image-archive does.
func (e *fleetEnv) loadImageArchive(clusterName, component string) error {
	archive := filepath.Join(e.dist, "jobset-fleet-"+component+"-"+e.version+".image.tar")
	ns, err := kindcluster.NewProvider(kindcluster.ProviderWithDocker()).ListNodes(clusterName)
	if err != nil {
		return err
	}
	var g errgroup.Group
	for _, n := range ns {
		g.Go(func() error {
			f, err := os.Open(archive)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := nodeutils.LoadImageArchive(n, f); err != nil {
				return fmt.Errorf("loading %s into %s: %w", filepath.Base(archive), n.String(), err)
			}
			return nil
		})
	}
	return g.Wait()
}

// join runs the real `jobset-fleet-agent join` in two steps that share no
// credentials, as a hub team and a member team do (`token create` with the
// hub's kubeconfig alone, then `join --token` with the member's alone). The
// join of one admin holding both kubeconfigs is the README block's.
func (e *fleetEnv) join(ctx context.Context, member string) error {
	dir, err := os.MkdirTemp("", "kindfleet-join-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	paths := map[string]string{}
	for _, name := range []string{hubName, member} {
		out, err := e.kubectlCmd(ctx, e.cluster(name), nil, "config", "view", "--minify", "--flatten")
		if err != nil {
			return err
		}
		paths[name] = filepath.Join(dir, name+".kubeconfig")
		if err := os.WriteFile(paths[name], []byte(out), 0o600); err != nil {
			return err
		}
	}
	agent := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(e.root, "bin", "jobset-fleet-agent"), args...)
		cmd.Dir = dir // the CRDs are in the binary
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("jobset-fleet-agent %s (%s): %w\n%s%s", args[0], member, err, out, stderrOf(err))
		}
		return out, nil
	}
	token, err := agent("token", "create", "--hub-kubeconfig", paths[hubName], "--cluster-name", member,
		"--hub-server", hubServer, "--labels", poolLabel+"="+poolValue, "--ttl", "10m", "-o", "token")
	if err != nil {
		return err
	}
	// The hub's address from this machine (not a credential): the token's
	// is the one the member's Pods use.
	hubAddress, err := e.kubectlCmd(ctx, e.cluster(hubName), nil, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	if err != nil {
		return err
	}
	out, err := agent("join", "--token", strings.TrimSpace(string(token)), "--token-hub-address", hubAddress, "--member-kubeconfig", paths[member])
	fmt.Printf("    join --token: %s", out)
	return err
}

func stderrOf(err error) []byte {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.Stderr
	}
	return nil
}

func (e *fleetEnv) cluster(name string) *kindCluster {
	if name == hubName {
		return e.hub
	}
	return e.members[name]
}

// waitMemberHealthy waits for the member's ClusterProfile on the hub to say
// its control plane is healthy: the agent reports, through its hub
// credentials, from inside the member.
func (e *fleetEnv) waitMemberHealthy(ctx context.Context, member string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		cp := &clusterinventory.ClusterProfile{}
		err := e.hub.c.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: member}, cp)
		switch {
		case err != nil:
			last = err.Error()
		case apimeta.IsStatusConditionTrue(cp.Status.Conditions, clusterinventory.ClusterConditionControlPlaneHealthy):
			return nil
		default:
			last = fmt.Sprintf("conditions %+v", cp.Status.Conditions)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s not healthy on the hub after %s: %s", member, timeout, last)
		case <-time.After(time.Second):
		}
	}
}

// dumpDiagnostics saves what explains a failure (pods, events, JobSets and
// the components' logs of every cluster) into bin/e2e-kind/logs and prints
// the components' log tails.
func (e *fleetEnv) dumpDiagnostics(ctx context.Context) {
	if e == nil || e.hub == nil || e.kubeconfig == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_ = os.MkdirAll(e.logDir, 0o755)
	for _, kc := range append([]*kindCluster{e.hub}, e.memberList()...) {
		component := "agent"
		if kc == e.hub {
			component = "hub"
		}
		for file, args := range map[string][]string{
			"pods":     {"get", "pods", "-A", "-o", "wide"},
			"events":   {"get", "events", "-A", "--sort-by=.lastTimestamp"},
			"jobsets":  {"get", "jobsets", "-A", "-o", "yaml"},
			"profiles": {"get", "clusterprofiles", "-A", "-o", "yaml"},
			component:  {"-n", systemNamespace, "logs", "-l", "app.kubernetes.io/component=" + component, "--all-containers", "--prefix", "--tail=-1"},
		} {
			out, _ := e.kubectlCmd(ctx, kc, nil, args...)
			_ = os.WriteFile(filepath.Join(e.logDir, kc.name+"-"+file+".txt"), []byte(out), 0o644)
			if file == component {
				fmt.Fprintf(os.Stderr, "===== %s %s logs (tail; full: %s)\n%s\n", kc.name, component, e.logDir, tail(out, 60))
			}
		}
	}
}

func (e *fleetEnv) memberList() []*kindCluster {
	var out []*kindCluster
	for _, m := range memberNames {
		if kc := e.members[m]; kc != nil {
			out = append(out, kc)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var _ io.Writer = (*prefixed)(nil)
