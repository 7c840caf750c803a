package main

import (
	"context"
	"fmt"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/devfleet"
)

// proxiedFleet is a devfleet brought up on fresh envtest control planes
// (kube-apiserver + etcd, no controller-manager, no scheduler), each of
// its processes reaching each apiserver through a counting proxy of its
// own, so their requests are told apart.
type proxiedFleet struct {
	*devfleet.Fleet
	// clusters by name, with their apiserver and etcd pids.
	clusters map[string]*cluster
	// proxies[process][cluster]; process is "hub" or "agent-<member>".
	proxies map[string]map[string]*apicount.Proxy
}

// upFleet brings the fleet of layout up in dir with devfleet; extra flags
// go to every process. Stop (devfleet's) stops the processes, then the
// proxies, then the control planes.
func upFleet(ctx context.Context, dir string, layout devfleet.Layout, cert *apicount.ServingCert, extra []string) (*proxiedFleet, error) {
	pf := &proxiedFleet{clusters: map[string]*cluster{}, proxies: map[string]map[string]*apicount.Proxy{}}
	o := devfleet.Options{
		Dir:       dir,
		ExtraArgs: extra,
		Clusters: func(_ context.Context, name string) (devfleet.Cluster, error) {
			c, err := startCluster(name)
			if err != nil {
				return devfleet.Cluster{}, err
			}
			pf.clusters[name] = c
			return devfleet.Cluster{Config: c.Config, Client: c.Client, Kubeconfig: c.KubeconfigPath, Stop: c.stop}, nil
		},
		Connect: func(process, clusterName string, target *rest.Config, kubeconfig string) (string, func(), error) {
			// The process keeps its own identity (an agent's hub token from
			// join) and otherwise gets the proxy's admin credentials.
			token, err := tokenOf(kubeconfig)
			if err != nil {
				return "", nil, err
			}
			p, err := apicount.Start(target, cert)
			if err != nil {
				return "", nil, err
			}
			path := filepath.Join(dir, process+"-to-"+clusterName+".kubeconfig")
			if err := p.WriteKubeconfig(path, cert, token); err != nil {
				p.Close()
				return "", nil, err
			}
			if pf.proxies[process] == nil {
				pf.proxies[process] = map[string]*apicount.Proxy{}
			}
			pf.proxies[process][clusterName] = p
			return path, p.Close, nil
		},
	}
	f, err := devfleet.Up(ctx, layout, o)
	if err != nil {
		return nil, err // Up stopped what it started
	}
	pf.Fleet = f
	return pf, nil
}

// tokenOf reads the bearer token of a kubeconfig's current context ("":
// it has none, e.g. an admin kubeconfig with a client certificate).
func tokenOf(path string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return "", fmt.Errorf("%s: no current context", path)
	}
	if auth := cfg.AuthInfos[ctx.AuthInfo]; auth != nil {
		return auth.Token, nil
	}
	return "", nil
}
