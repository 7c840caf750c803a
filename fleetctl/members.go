package fleetctl

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

func newMembersCommand(o *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "members",
		Aliases: []string{"member"},
		Short:   "List the member clusters: health, heartbeat, cordon, capacity and JobSets",
		Long: `members lists the fleet's member clusters as the hub's inventory assesses
them (hub/inventory.Assess over ClusterProfiles and heartbeat Leases): health,
heartbeat age, cordoned or out-of-service, allocatable and free CPU, memory and
GPUs, and how many unfinished JobSets the hub placed there.

The heartbeat age is measured from the Lease's renewTime, written by the
member's clock; the hub itself never compares clocks (it watches the Lease
change), so a member whose clock is off shows a wrong age here.`,
		Example: `  kubectl fleet members
  kubectl fleet members -o wide   # with the reason a member is unhealthy
  kubectl fleet members -o yaml   # the same table, machine-readable`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			members, err := o.readMembers(cmd.Context(), c)
			if err != nil {
				return err
			}
			counts, err := jobSetCounts(cmd.Context(), c)
			if apierrors.IsForbidden(err) {
				fmt.Fprintln(o.ErrOut, "warning: JOBSETS not counted: you cannot list JobSets in all namespaces")
				counts, err = nil, nil
			}
			if err != nil {
				return err
			}
			if len(members) == 0 {
				fmt.Fprintf(o.ErrOut, "No member clusters found in %s namespace.\n", o.InventoryNamespace)
				return nil
			}
			t := MemberTable(members, counts)
			if output == outputJSON || output == outputYAML {
				return printObject(t, output, o.Out)
			}
			return printTable(t, output == outputWide, false, o.Out)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// MemberView is one member as the plugin shows it: the hub's assessment
// plus what the plugin adds.
type MemberView struct {
	inventory.Member
	// HeartbeatAge is the time since the Lease's renewTime (the member's
	// clock); negative when never renewed.
	HeartbeatAge time.Duration
	// LostMember: silent past the member-lost timeout.
	LostMember bool
}

// readMembers assesses every fleet ClusterProfile with the hub's own
// inventory.Assess. The hub watches a heartbeat Lease change by its own
// clock; a one-shot reader cannot, so the Lease's renewTime stands in for
// the last change.
func (o *Options) readMembers(ctx context.Context, c client.Client) ([]MemberView, error) {
	list := &clusterinventory.ClusterProfileList{}
	if err := c.List(ctx, list, client.InNamespace(o.InventoryNamespace)); err != nil {
		return nil, err
	}
	now := o.Now()
	var out []MemberView
	for i := range list.Items {
		p := &list.Items[i]
		if !inventory.IsFleetProfile(p) {
			continue
		}
		lease := &coordinationv1.Lease{}
		err := c.Get(ctx, client.ObjectKey{Namespace: fleet.MemberNamespace(p.Name), Name: fleet.HeartbeatLeaseName}, lease)
		switch {
		case apierrors.IsNotFound(err):
			lease = nil
		case err != nil:
			return nil, err
		}
		hb := HeartbeatFromLease(lease)
		v := MemberView{
			Member:       inventory.Assess(p, hb, now, inventory.Assessment{HeartbeatTimeout: o.HeartbeatTimeout, MemberLostTimeout: o.MemberLostTimeout}),
			HeartbeatAge: -1,
		}
		v.LostMember = v.Lost(o.MemberLostTimeout)
		if hb.Seen {
			v.HeartbeatAge = now.Sub(hb.LastChange)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// HeartbeatFromLease is what a one-shot reader knows of a heartbeat: its
// last renewal by the member's clock (acquire time, else creation, when
// never renewed) and the fence timeout the agent publishes.
func HeartbeatFromLease(lease *coordinationv1.Lease) inventory.Heartbeat {
	if lease == nil {
		return inventory.Heartbeat{}
	}
	hb := inventory.Heartbeat{Seen: true, LastChange: lease.CreationTimestamp.Time}
	switch {
	case lease.Spec.RenewTime != nil:
		hb.LastChange = lease.Spec.RenewTime.Time
	case lease.Spec.AcquireTime != nil:
		hb.LastChange = lease.Spec.AcquireTime.Time
	}
	if d := lease.Spec.LeaseDurationSeconds; d != nil && *d > 0 {
		hb.FenceTimeout = time.Duration(*d) * time.Second
	}
	return hb
}

// jobSetCounts counts the unfinished hub JobSets placed on each member.
func jobSetCounts(ctx context.Context, c client.Client) (map[string]int, error) {
	list := &jobset.JobSetList{}
	if err := c.List(ctx, list); err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for i := range list.Items {
		js := &list.Items[i]
		if cl := fleetStatus(js).Cluster; cl != "" && js.Status.TerminalState == "" {
			counts[cl]++
		}
	}
	return counts, nil
}

// MemberTable is `members`. counts nil: JobSets not counted ("?").
func MemberTable(members []MemberView, counts map[string]int) *metav1.Table {
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{APIVersion: metav1.SchemeGroupVersion.String(), Kind: "Table"}, ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name"},
		{Name: "Health", Type: "string", Description: "Healthy: control plane healthy and heartbeat fresh"},
		{Name: "Heartbeat", Type: "string", Description: "Time since the agent last renewed its heartbeat Lease"},
		{Name: "Scheduling", Type: "string", Description: "Cordoned, OutOfService or Schedulable"},
		{Name: "CPU", Type: "string", Description: "free/allocatable"},
		{Name: "Memory", Type: "string", Description: "free/allocatable"},
		{Name: "GPU", Type: "string", Description: "free/allocatable"},
		{Name: "JobSets", Type: "string", Description: "Unfinished JobSets the hub placed on the member"},
		{Name: "Reason", Type: "string", Priority: 1},
	}}
	for _, m := range members {
		health := "Healthy"
		if !m.Healthy {
			health = "Unhealthy"
			if m.LostMember {
				health = "Lost"
			}
		}
		jobsets := "?"
		if counts != nil {
			jobsets = fmt.Sprint(counts[m.Name])
		}
		t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{
			m.Name, health, heartbeatAge(m), Scheduling(m),
			capacity(m.Free, m.Allocatable, corev1.ResourceCPU), capacity(m.Free, m.Allocatable, corev1.ResourceMemory), gpus(m.Free, m.Allocatable),
			jobsets, oneLine(m.Reason),
		}, Object: runtime.RawExtension{Object: m.Profile}})
	}
	return t
}

func heartbeatAge(m MemberView) string {
	if m.HeartbeatAge < 0 {
		return "<none>"
	}
	return duration.HumanDuration(m.HeartbeatAge)
}

// Scheduling says whether the hub places new work on the member.
func Scheduling(m MemberView) string {
	var s []string
	if m.OutOfService {
		s = append(s, "OutOfService")
	}
	if m.Cordoned {
		s = append(s, "Cordoned")
	}
	if len(s) == 0 {
		return "Schedulable"
	}
	return strings.Join(s, ",")
}

// capacity is "free/allocatable", "-" when the member reports neither.
func capacity(free, alloc corev1.ResourceList, name corev1.ResourceName) string {
	f, fok := free[name]
	a, aok := alloc[name]
	if !fok && !aok {
		return "-"
	}
	return quantity(f, fok) + "/" + quantity(a, aok)
}

func quantity(q resource.Quantity, ok bool) string {
	if !ok {
		return "?"
	}
	return q.String()
}

// gpus sums every resource named <vendor>/gpu (nvidia.com/gpu, amd.com/gpu).
func gpus(free, alloc corev1.ResourceList) string {
	sum := func(l corev1.ResourceList) (resource.Quantity, bool) {
		var total resource.Quantity
		found := false
		for name, q := range l {
			if strings.HasSuffix(string(name), "/gpu") {
				total.Add(q)
				found = true
			}
		}
		return total, found
	}
	f, fok := sum(free)
	a, aok := sum(alloc)
	if !fok && !aok {
		return "-"
	}
	return quantity(f, fok) + "/" + quantity(a, aok)
}
