package inventory

import (
	"encoding/json"
	"fmt"
	"strings"

	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Bounds on the Kueue quotas the hub reads: an agent publishes at most
// 8 KiB; the hub accepts some more, not without limit.
const (
	// MaxKueueQuotasParts is the most kueue-quotas properties joined.
	MaxKueueQuotasParts = 32
	// MaxKueueQueues is the most LocalQueues, and ClusterQueues, read.
	MaxKueueQueues = 1024
)

// ParseKueueQuotas reads the member's Kueue quotas from its properties
// fleet.KueueQuotasPart(0), (1), ... joined in order. It returns nil and no
// error when the member publishes none (it runs no Kueue), and nil and the
// reason when what it publishes cannot be used: malformed, too large, or
// with negative free quota.
func ParseKueueQuotas(props []clusterinventory.Property) (*fleet.KueueQuotas, error) {
	raw, found, err := joinParts(props, fleet.PropertyKueueQuotas, fleet.KueueQuotasPart, MaxKueueQuotasParts)
	if !found || err != nil {
		return nil, err
	}
	q := &fleet.KueueQuotas{}
	if err := json.Unmarshal([]byte(raw), q); err != nil {
		return nil, fmt.Errorf("not JSON of Kueue quotas: %w", err)
	}
	if len(q.LocalQueues) > MaxKueueQueues || len(q.ClusterQueues) > MaxKueueQueues {
		return nil, fmt.Errorf("%d LocalQueues and %d ClusterQueues, more than %d", len(q.LocalQueues), len(q.ClusterQueues), MaxKueueQueues)
	}
	for _, cq := range q.ClusterQueues {
		for _, rg := range cq.ResourceGroups {
			for _, f := range rg.Flavors {
				for r, v := range f.Free {
					if v.Sign() < 0 {
						return nil, fmt.Errorf("ClusterQueue %s: negative free %s in flavor %s", fleet.Bounded(cq.Name, 64), r, fleet.Bounded(f.Name, 64))
					}
				}
			}
		}
	}
	return q, nil
}

// joinParts joins the values of the properties part(0), part(1), ... (the
// first is named base) in order, at most maxParts of them. found is false
// when part(0) is absent.
func joinParts(props []clusterinventory.Property, base string, part func(int) string, maxParts int) (joined string, found bool, err error) {
	values := map[string]string{}
	for _, p := range props {
		if p.Name == base || strings.HasPrefix(p.Name, base+".") {
			values[p.Name] = p.Value
		}
	}
	first, ok := values[part(0)]
	if !ok {
		return "", false, nil
	}
	var raw strings.Builder
	raw.WriteString(first)
	for i := 1; ; i++ {
		v, ok := values[part(i)]
		if !ok {
			break
		}
		if i >= maxParts {
			return "", true, fmt.Errorf("more than %d parts", maxParts)
		}
		raw.WriteString(v)
	}
	return raw.String(), true, nil
}

// LocalQueue finds the member's LocalQueue namespace/name and its
// ClusterQueue (nil when the member does not report it).
func LocalQueue(q *fleet.KueueQuotas, namespace, name string) (*fleet.KueueLocalQueue, *fleet.KueueClusterQueue) {
	for i := range q.LocalQueues {
		lq := &q.LocalQueues[i]
		if lq.Namespace != namespace || lq.Name != name {
			continue
		}
		for j := range q.ClusterQueues {
			if q.ClusterQueues[j].Name == lq.ClusterQueue {
				return lq, &q.ClusterQueues[j]
			}
		}
		return lq, nil
	}
	return nil, nil
}
