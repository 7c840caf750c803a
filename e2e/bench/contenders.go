package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// contender is one JobSet controller (or the raw client) under test.
type contender struct {
	key  string // raw, upstream, ours, ...
	name string // as the table shows it
	// start runs it against the cluster behind kubeconfig (a counting
	// proxy); dir is for its files. Every contender works on JobSets of
	// all namespaces.
	start func(dir, kubeconfig string) (*testenv.Process, error)
}

// benchBins are the binaries the benchmark runs.
type benchBins struct {
	agent, hub, upstream, self string
}

// findBins finds the binaries the chosen scenarios run.
func findBins(dir string, o options) (benchBins, error) {
	self, err := os.Executable()
	if err != nil {
		return benchBins{}, err
	}
	b := benchBins{
		agent:    filepath.Join(dir, "jobset-fleet-agent"),
		hub:      filepath.Join(dir, "jobset-fleet-hub"),
		upstream: filepath.Join(dir, "upstream-jobset"),
		self:     self,
	}
	var need []string
	if o.scenarios["member"] || o.scenarios["pods"] || o.scenarios["hub"] {
		need = append(need, b.agent)
	}
	if o.scenarios["hub"] || o.scenarios["placement"] || o.scenarios["fleet-scale"] {
		need = append(need, b.hub)
	}
	if (o.scenarios["member"] && o.contenders["upstream"]) || o.scenarios["pods"] || (o.scenarios["hub"] && o.contenders["multikueue"]) {
		need = append(need, b.upstream)
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			return b, fmt.Errorf("%s is missing: `make bench-scale` builds it (make build; go build sigs.k8s.io/jobset in hack/upstream): %w", p, err)
		}
	}
	return b, nil
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// rawContender is the floor: see rawMain. With asController it also does
// the two things any JobSet controller must and the plain floor does not:
// one status write per JobSet, and a watch of the Jobs it made.
func rawContender(bins benchBins, workers int, asController bool) contender {
	key, name := "raw", fmt.Sprintf("raw client-go (%d workers)", workers)
	args := []string{"-workers", strconv.Itoa(workers)}
	if asController {
		key, name = "raw-controller", fmt.Sprintf("raw client-go + status write + Job watch (%d workers)", workers)
		args = append(args, "-as-controller")
	}
	return contender{
		key:  key,
		name: name,
		start: func(dir, kubeconfig string) (*testenv.Process, error) {
			return testenv.StartProcess(key, filepath.Join(dir, key+".log"), bins.self,
				append([]string{"-kubeconfig", kubeconfig}, args...),
				[]string{roleEnv + "=raw"})
		},
	}
}

// upstreamContender is upstream JobSet v0.12.0's controller with its
// defaults (QPS/burst 500/500, one worker per controller, its Pod
// controller), except what running it as a local process needs: no leader
// election (nothing to elect against; ours runs without it too), no
// metrics server (secure serving would need certificates), and internal
// certificate management off with a self-signed certificate in its cert
// dir — its webhook server always starts, and its rotator only works
// in-cluster. No webhook configuration points at it: the workload is
// submitted already defaulted, as for ours.
func upstreamContender(bins benchBins, cert *apicount.ServingCert) contender {
	return contender{
		key:  "upstream",
		name: "upstream JobSet v0.12.0",
		start: func(dir, kubeconfig string) (*testenv.Process, error) {
			certDir := filepath.Join(dir, "upstream-certs")
			if err := cert.WriteDir(certDir); err != nil {
				return nil, err
			}
			webhookPort, err := freePort()
			if err != nil {
				return nil, err
			}
			probePort, err := freePort()
			if err != nil {
				return nil, err
			}
			config := fmt.Sprintf(`apiVersion: config.jobset.x-k8s.io/v1alpha1
kind: Configuration
internalCertManagement:
  enable: false
webhook:
  port: %d
  certDir: %s
`, webhookPort, certDir)
			configPath := filepath.Join(dir, "upstream-config.yaml")
			if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
				return nil, err
			}
			return testenv.StartProcess("upstream", filepath.Join(dir, "upstream.log"), bins.upstream, []string{
				"--kubeconfig=" + kubeconfig,
				"--config=" + configPath,
				"--leader-elect=false",
				"--metrics-bind-address=0",
				"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(probePort),
			}, nil)
		},
	}
}

// oursContender is jobset-fleet-agent standalone (no hub), started the way
// the issue found slow: --kubeconfig FILE. Webhooks are disabled (not in
// the admission path, as for upstream); extra flags (e.g.
// --kube-api-qps=-1) make a variant.
func oursContender(bins benchBins, key, name string, extra ...string) contender {
	return contender{
		key:  key,
		name: name,
		start: func(dir, kubeconfig string) (*testenv.Process, error) {
			probePort, err := freePort()
			if err != nil {
				return nil, err
			}
			args := append([]string{
				"--kubeconfig=" + kubeconfig,
				"--disable-webhooks",
				"--leader-elect=false",
				"--metrics-bind-address=0",
				"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(probePort),
			}, extra...)
			return testenv.StartProcess(key, filepath.Join(dir, key+".log"), bins.agent, args, nil)
		},
	}
}

// binDir is where the control-plane and project binaries are.
func binDir() string { return testenv.BinDir() }
