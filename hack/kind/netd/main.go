// Command netd is the pod network of the jobset-fleet kind clusters (which are
// created with disableDefaultCNI). It runs as a hostNetwork DaemonSet pod on
// every node and keeps three things true, reacting to node changes:
//
//   - /etc/cni/net.d holds a bridge + host-local conflist for this node's
//     spec.podCIDR (so the kubelet's CNI turns Ready);
//   - for every other node, a route to that node's podCIDR via its InternalIP
//     (all kind nodes share one Docker network, so they are one hop apart);
//   - one MASQUERADE rule for traffic leaving the pod network from this node.
//
// It uses the ip and iptables commands of its image.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func main() {
	nodeName := flag.String("node-name", os.Getenv("NODE_NAME"), "this node's name")
	podSubnet := flag.String("pod-subnet", "10.244.0.0/16", "the cluster's pod network (kind's podSubnet)")
	cniDir := flag.String("cni-conf-dir", "/etc/cni/net.d", "where the kubelet's runtime reads CNI configs")
	resync := flag.Duration("resync", 30*time.Second, "re-apply everything at least this often")
	flag.Parse()
	if *nodeName == "" {
		log.Fatal("netd: --node-name (or NODE_NAME) is required")
	}
	if _, _, err := net.ParseCIDR(*podSubnet); err != nil {
		log.Fatalf("netd: --pod-subnet: %v", err)
	}

	cfg, err := rest.InClusterConfig()
	if err != nil {
		log.Fatalf("netd: %v", err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	factory := informers.NewSharedInformerFactory(client, *resync)
	nodes := factory.Core().V1().Nodes()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    poke,
		UpdateFunc: func(_, n any) { poke(n) },
		DeleteFunc: poke,
	}); err != nil {
		log.Fatalf("netd: %v", err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	n := &netd{self: *nodeName, podSubnet: *podSubnet, cniDir: *cniDir, routes: map[string]string{}}
	tick := time.NewTicker(*resync)
	defer tick.Stop()
	for {
		list, err := nodes.Lister().List(labels.Everything())
		if err == nil {
			err = n.sync(list)
		}
		if err != nil {
			log.Printf("netd: %v (retrying)", err)
			time.AfterFunc(2*time.Second, func() { poke(nil) })
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-tick.C:
		}
	}
}

type netd struct {
	self, podSubnet, cniDir string
	routes                  map[string]string // podCIDR -> via, as installed
	masq                    bool
}

func (n *netd) sync(nodes []*corev1.Node) error {
	var self *corev1.Node
	want := map[string]string{}
	for _, node := range nodes {
		if node.Name == n.self {
			self = node
			continue
		}
		ip := internalIP(node)
		if node.Spec.PodCIDR == "" || ip == "" {
			continue
		}
		want[node.Spec.PodCIDR] = ip
	}
	if self == nil {
		return fmt.Errorf("node %s not found", n.self)
	}
	if self.Spec.PodCIDR == "" {
		return fmt.Errorf("node %s has no podCIDR yet", n.self)
	}
	if err := n.writeConfig(self.Spec.PodCIDR); err != nil {
		return err
	}
	if err := n.syncRoutes(want); err != nil {
		return err
	}
	return n.ensureMasquerade(self.Spec.PodCIDR)
}

func (n *netd) writeConfig(podCIDR string) error {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "netd",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      "netd0",
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": podCIDR}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(n.cniDir, "10-netd.conflist")
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	log.Printf("netd: wrote %s for podCIDR %s", path, podCIDR)
	return nil
}

func (n *netd) syncRoutes(want map[string]string) error {
	cidrs := make([]string, 0, len(want))
	for c := range want {
		cidrs = append(cidrs, c)
	}
	sort.Strings(cidrs)
	for _, cidr := range cidrs {
		via := want[cidr]
		// replace is idempotent; run it every sync so a lost route comes back.
		if err := run("ip", "route", "replace", cidr, "via", via); err != nil {
			return err
		}
		if n.routes[cidr] != via {
			log.Printf("netd: route %s via %s", cidr, via)
			n.routes[cidr] = via
		}
	}
	for cidr, via := range n.routes {
		if _, ok := want[cidr]; ok {
			continue
		}
		if err := run("ip", "route", "del", cidr, "via", via); err != nil {
			log.Printf("netd: %v", err)
		}
		delete(n.routes, cidr)
		log.Printf("netd: removed route %s via %s", cidr, via)
	}
	return nil
}

func (n *netd) ensureMasquerade(podCIDR string) error {
	rule := []string{"POSTROUTING", "-s", podCIDR, "!", "-d", n.podSubnet,
		"-m", "comment", "--comment", "netd: pod traffic leaving the pod network", "-j", "MASQUERADE"}
	if run("iptables", append([]string{"-t", "nat", "-C"}, rule...)...) == nil {
		return nil
	}
	if err := run("iptables", append([]string{"-t", "nat", "-A"}, rule...)...); err != nil {
		return err
	}
	if !n.masq {
		log.Printf("netd: masquerading %s to outside %s", podCIDR, n.podSubnet)
		n.masq = true
	}
	return nil
}

func internalIP(node *corev1.Node) string {
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && net.ParseIP(a.Address).To4() != nil {
			return a.Address
		}
	}
	return ""
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
