// Package devfleet is the local fleet, without Docker: a hub and members
// that are kwok clusters of real control-plane processes with fake nodes,
// and the hub and the agents running as local processes, joined with the
// real `jobset-fleet-agent join`. `make run`, `make dev-up` and `make
// dev-down` drive it through hack/devfleet; the e2e tests of e2e/fleet
// start it themselves and read its Layout; e2e/bench brings it up on
// envtest clusters with a counting proxy per process (Options.Clusters,
// Options.Connect). e2e/README.md says which suite uses which harness.
package devfleet

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Layout is the shape of the fleet.
type Layout struct {
	Hub     string
	Members []Member
}

// Member is one member cluster: Racks racks of NodesPerRack fake nodes,
// each with NodeResources, labelled with RackLabel.
type Member struct {
	Name  string
	Racks int
}

// Every fake node is the same.
const (
	NodesPerRack = 2
	// RackLabel names a node's rack ("rack0", "rack1", ...); the agents
	// report its domains for exclusive-topology placement.
	RackLabel = "rack"
)

// NodeResources is every fake node's capacity.
func NodeResources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		"nvidia.com/gpu":      resource.MustParse("4"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// Default is the fleet `make dev-up` brings up: member-1 has a rack for each
// of the pytorch example's 4 Jobs, member-2 only 2.
var Default = Layout{Hub: "hub", Members: []Member{{Name: "member-1", Racks: 4}, {Name: "member-2", Racks: 2}}}

// Rack is the rack label value of rack r.
func Rack(r int) string { return "rack" + strconv.Itoa(r) }

// Nodes maps each of the member's node names to its rack.
func (m Member) Nodes() map[string]string {
	nodes := map[string]string{}
	for r := range m.Racks {
		for n := range NodesPerRack {
			nodes[fmt.Sprintf("%s-%s-node%d", m.Name, Rack(r), n)] = Rack(r)
		}
	}
	return nodes
}

// Allocatable is what the member's nodes offer in all.
func (m Member) Allocatable(name corev1.ResourceName) resource.Quantity {
	q := NodeResources()[name]
	total := resource.Quantity{Format: q.Format}
	for range m.Racks * NodesPerRack {
		total.Add(q)
	}
	return total
}

// Clusters lists the hub and then the members.
func (l Layout) Clusters() []string {
	names := []string{l.Hub}
	for _, m := range l.Members {
		names = append(names, m.Name)
	}
	return names
}
