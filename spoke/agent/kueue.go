package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Kueue on the member. The agent reads Kueue's objects as unstructured
// through a few fields of its own (kueueClusterQueue, kueueLocalQueue,
// kueueWorkload): Kueue's Go module would bring its whole dependency tree
// into the agent for five fields, and a member without Kueue has no such
// types to register.

// kueueAPIVersion is the Kueue API the agent reads (Kueue v0.15 and later
// serve it).
const kueueAPIVersion = "kueue.x-k8s.io/v1beta2"

// Bounds of the Kueue quotas the agent publishes.
const (
	// MaxKueueQuotasBytes bounds the quotas' JSON (8 properties).
	MaxKueueQuotasBytes = 8 << 10
	// MaxKueueLocalQueues bounds the LocalQueues read and reported.
	MaxKueueLocalQueues = 256
	// MaxKueueClusterQueues bounds the ClusterQueues read (their cohorts'
	// free quota is summed over them).
	MaxKueueClusterQueues = 512
)

// +kubebuilder:rbac:groups=kueue.x-k8s.io,resources=clusterqueues;localqueues,verbs=list;get
// +kubebuilder:rbac:groups=kueue.x-k8s.io,resources=workloads,verbs=list

// kueueClusterQueue is what the agent reads of a ClusterQueue.
type kueueClusterQueue struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		CohortName     string `json:"cohortName,omitempty"`
		ResourceGroups []struct {
			CoveredResources []corev1.ResourceName `json:"coveredResources,omitempty"`
			Flavors          []struct {
				Name      string `json:"name"`
				Resources []struct {
					Name           corev1.ResourceName `json:"name"`
					NominalQuota   resource.Quantity   `json:"nominalQuota"`
					BorrowingLimit *resource.Quantity  `json:"borrowingLimit,omitempty"`
					LendingLimit   *resource.Quantity  `json:"lendingLimit,omitempty"`
				} `json:"resources,omitempty"`
			} `json:"flavors,omitempty"`
		} `json:"resourceGroups,omitempty"`
	} `json:"spec"`
	Status struct {
		Conditions []metav1.Condition `json:"conditions,omitempty"`
		// FlavorsReservation is the quota reserved by workloads, admitted
		// or about to be: what is no longer free.
		FlavorsReservation []struct {
			Name      string `json:"name"`
			Resources []struct {
				Name  corev1.ResourceName `json:"name"`
				Total resource.Quantity   `json:"total"`
			} `json:"resources,omitempty"`
		} `json:"flavorsReservation,omitempty"`
	} `json:"status"`
}

// kueueLocalQueue is what the agent reads of a LocalQueue.
type kueueLocalQueue struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		ClusterQueue string `json:"clusterQueue"`
	} `json:"spec"`
}

// fromUnstructured converts a Kueue object into the agent's view of it.
func fromUnstructured(u *unstructured.Unstructured, into any) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return fmt.Errorf("reading %s %s: %w", u.GetKind(), client.ObjectKeyFromObject(u), err)
	}
	return nil
}

// listKueue lists up to limit objects of a Kueue kind, live. It reports
// served=false, and no error, when the member does not serve Kueue's API.
func listKueue(ctx context.Context, r client.Reader, kind string, limit int64, opts ...client.ListOption) (items []unstructured.Unstructured, served bool, err error) {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion(kueueAPIVersion)
	list.SetKind(kind + "List")
	err = r.List(ctx, list, append(opts, client.Limit(limit))...)
	switch {
	case meta.IsNoMatchError(err):
		return nil, false, nil
	case err != nil:
		return nil, true, fmt.Errorf("listing Kueue %ss: %w", kind, err)
	}
	return list.Items, true, nil
}

// readKueueQuotas reads the member's LocalQueues and ClusterQueues. It
// returns nil, and no error, when the member does not serve Kueue's API.
func readKueueQuotas(ctx context.Context, r client.Reader) (*fleet.KueueQuotas, error) {
	lqItems, served, err := listKueue(ctx, r, "LocalQueue", MaxKueueLocalQueues+1)
	if err != nil || !served {
		return nil, err
	}
	cqItems, _, err := listKueue(ctx, r, "ClusterQueue", MaxKueueClusterQueues)
	if err != nil {
		return nil, err
	}
	lqs := make([]kueueLocalQueue, len(lqItems))
	for i := range lqItems {
		if err := fromUnstructured(&lqItems[i], &lqs[i]); err != nil {
			return nil, err
		}
	}
	cqs := make([]kueueClusterQueue, len(cqItems))
	for i := range cqItems {
		if err := fromUnstructured(&cqItems[i], &cqs[i]); err != nil {
			return nil, err
		}
	}
	q := ComputeKueueQuotas(lqs, cqs)
	return &q, nil
}

// ComputeKueueQuotas is the member's Kueue quotas: every LocalQueue
// (sorted, at most MaxKueueLocalQueues) with its ClusterQueue, and for
// those ClusterQueues the quota free per resource group, flavor and
// resource, within MaxKueueQuotasBytes (LocalQueues beyond it are counted
// in Omitted, with their ClusterQueues when no other LocalQueue names
// them).
func ComputeKueueQuotas(lqs []kueueLocalQueue, cqs []kueueClusterQueue) fleet.KueueQuotas {
	out := fleet.KueueQuotas{}
	for _, lq := range lqs {
		out.LocalQueues = append(out.LocalQueues, fleet.KueueLocalQueue{Namespace: lq.Metadata.Namespace, Name: lq.Metadata.Name, ClusterQueue: lq.Spec.ClusterQueue})
	}
	slices.SortFunc(out.LocalQueues, func(a, b fleet.KueueLocalQueue) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	if n := len(out.LocalQueues); n > MaxKueueLocalQueues {
		out.Omitted = int32(n - MaxKueueLocalQueues)
		out.LocalQueues = out.LocalQueues[:MaxKueueLocalQueues]
	}
	free := map[string]fleet.KueueClusterQueue{}
	for i := range cqs {
		free[cqs[i].Metadata.Name] = clusterQueueFree(&cqs[i], cqs)
	}
	for {
		out.ClusterQueues = out.ClusterQueues[:0]
		for _, name := range referencedQueues(out.LocalQueues) {
			if cq, ok := free[name]; ok {
				out.ClusterQueues = append(out.ClusterQueues, cq)
			}
		}
		if len(out.LocalQueues) == 0 || jsonSize(out) <= MaxKueueQuotasBytes {
			return out
		}
		out.LocalQueues = out.LocalQueues[:len(out.LocalQueues)-1]
		out.Omitted++
	}
}

// referencedQueues are the ClusterQueues the LocalQueues name, sorted.
func referencedQueues(lqs []fleet.KueueLocalQueue) []string {
	var names []string
	for _, lq := range lqs {
		names = append(names, lq.ClusterQueue)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// clusterQueueFree is what cq has free: per flavor and resource, its
// nominal quota minus what it has reserved, plus what it may borrow: the
// unused quota of the other ClusterQueues of its cohort (each at most its
// lending limit), at most cq's borrowing limit. The quota of Cohort
// objects themselves is not counted, so it may underestimate.
func clusterQueueFree(cq *kueueClusterQueue, all []kueueClusterQueue) fleet.KueueClusterQueue {
	out := fleet.KueueClusterQueue{Name: cq.Metadata.Name, Inactive: !meta.IsStatusConditionTrue(cq.Status.Conditions, "Active")}
	for _, rg := range cq.Spec.ResourceGroups {
		group := fleet.KueueResourceGroup{}
		for _, f := range rg.Flavors {
			flavor := fleet.KueueFlavorFree{Name: f.Name, Free: corev1.ResourceList{}}
			for _, r := range f.Resources {
				q := unused(cq, f.Name, r.Name, r.NominalQuota)
				if cq.Spec.CohortName != "" {
					lendable := cohortUnused(cq, all, f.Name, r.Name)
					if r.BorrowingLimit != nil && lendable.Cmp(*r.BorrowingLimit) > 0 {
						lendable = r.BorrowingLimit.DeepCopy()
					}
					q.Add(lendable)
				}
				if q.Sign() < 0 || out.Inactive {
					q = resource.Quantity{Format: r.NominalQuota.Format}
				}
				flavor.Free[r.Name] = q
			}
			group.Flavors = append(group.Flavors, flavor)
		}
		out.ResourceGroups = append(out.ResourceGroups, group)
	}
	return out
}

// unused is cq's nominal quota of resource r in flavor minus what cq has
// reserved of it (negative while cq borrows).
func unused(cq *kueueClusterQueue, flavor string, r corev1.ResourceName, nominal resource.Quantity) resource.Quantity {
	q := nominal.DeepCopy()
	for _, fu := range cq.Status.FlavorsReservation {
		if fu.Name != flavor {
			continue
		}
		for _, ru := range fu.Resources {
			if ru.Name == r {
				q.Sub(ru.Total)
			}
		}
	}
	return q
}

// cohortUnused is what the other ClusterQueues of cq's cohort leave
// unused of resource r in flavor, each at most its lending limit, and
// less what borrowers of the cohort take.
func cohortUnused(cq *kueueClusterQueue, all []kueueClusterQueue, flavor string, r corev1.ResourceName) resource.Quantity {
	var sum resource.Quantity
	for i := range all {
		o := &all[i]
		if o.Metadata.Name == cq.Metadata.Name || o.Spec.CohortName != cq.Spec.CohortName {
			continue
		}
		for _, rg := range o.Spec.ResourceGroups {
			for _, f := range rg.Flavors {
				if f.Name != flavor {
					continue
				}
				for _, res := range f.Resources {
					if res.Name != r {
						continue
					}
					q := unused(o, flavor, r, res.NominalQuota)
					if res.LendingLimit != nil && q.Cmp(*res.LendingLimit) > 0 {
						q = res.LendingLimit.DeepCopy()
					}
					sum.Add(q)
				}
			}
		}
	}
	if sum.Sign() < 0 {
		return resource.Quantity{}
	}
	return sum
}

// KueueQuotasProperties publishes the quotas as compact JSON cut into
// properties fleet.KueueQuotasPart(0), (1), ...
func KueueQuotasProperties(q fleet.KueueQuotas, now metav1.Time) []clusterinventory.Property {
	return jsonProperties(q, fleet.KueueQuotasPart, now)
}

// jsonProperties is v as compact JSON, cut into properties of at most
// fleet.MaxPropertyValue characters (never inside a UTF-8 sequence) named
// part(0), part(1), ...
func jsonProperties(v any, part func(int) string, now metav1.Time) []clusterinventory.Property {
	raw, err := json.Marshal(v)
	if err != nil {
		// Only strings, integers and quantities.
		panic(fmt.Sprintf("marshalling %T: %v", v, err))
	}
	var props []clusterinventory.Property
	for text := string(raw); text != ""; {
		n := min(len(text), fleet.MaxPropertyValue)
		for n < len(text) && !utf8.RuneStart(text[n]) {
			n--
		}
		props = append(props, clusterinventory.Property{Name: part(len(props)), Value: text[:n], LastObservedTime: now})
		text = text[n:]
	}
	return props
}

func jsonSize(v any) int {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshalling %T: %v", v, err))
	}
	return len(raw)
}
