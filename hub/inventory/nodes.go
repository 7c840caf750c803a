package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Bounds on the node summary the hub reads: an agent publishes at most
// 16 KiB; the hub accepts some more, not without limit.
const (
	// MaxNodeSummaryParts is the most node-summary properties joined.
	MaxNodeSummaryParts = 64
	// MaxNodeGroups is the most groups a summary may have.
	MaxNodeGroups = 256
	// MaxNodeSummaryReason bounds what an unusable summary adds to
	// Member.Reason.
	MaxNodeSummaryReason = 160
)

// ParseNodeSummary reads the member's node summary from its properties
// fleet.NodeSummaryPart(0), (1), ... joined in order. It returns nil and
// no error when the member publishes none, and nil and the reason when
// what it publishes cannot be trusted: malformed, too large, or claiming
// more nodes free than it has (a summary must never overstate a member).
func ParseNodeSummary(props []clusterinventory.Property) (*fleet.NodeSummary, error) {
	raw, found, err := joinParts(props, fleet.PropertyNodeSummary, fleet.NodeSummaryPart, MaxNodeSummaryParts)
	if !found || err != nil {
		return nil, err
	}
	return parseSummary(raw)
}

// summaries caches parsed node summaries by their text: every assessment
// of every member reads its summary (each placement assesses the fleet),
// and the text changes only when the member's nodes do. The summaries are
// shared by every Member assessed from the same text: read them only
// (DeepCopy to change one).
var summaries struct {
	mu sync.Mutex
	m  map[string]parsedSummary
}

type parsedSummary struct {
	s   *fleet.NodeSummary
	err error
}

// maxCachedSummaries bounds the cache: a few versions per member of a
// large fleet. It is emptied when full.
const maxCachedSummaries = 1024

func parseSummary(raw string) (*fleet.NodeSummary, error) {
	summaries.mu.Lock()
	p, ok := summaries.m[raw]
	summaries.mu.Unlock()
	if ok {
		return p.s, p.err
	}
	s := &fleet.NodeSummary{}
	if err := json.Unmarshal([]byte(raw), s); err != nil {
		p = parsedSummary{err: fmt.Errorf("not JSON of a node summary: %w", err)}
	} else if err := validNodeSummary(s); err != nil {
		p = parsedSummary{err: err}
	} else {
		p = parsedSummary{s: s}
	}
	summaries.mu.Lock()
	if summaries.m == nil || len(summaries.m) >= maxCachedSummaries {
		summaries.m = map[string]parsedSummary{}
	}
	summaries.m[raw] = p
	summaries.mu.Unlock()
	return p.s, p.err
}

func validNodeSummary(s *fleet.NodeSummary) error {
	if len(s.Groups) > MaxNodeGroups {
		return fmt.Errorf("%d node groups, more than %d", len(s.Groups), MaxNodeGroups)
	}
	if s.Omitted < 0 {
		return errors.New("negative omitted count")
	}
	for i := range s.Groups {
		g := &s.Groups[i]
		var counted int64
		for _, f := range g.Free {
			if f.Count < 0 {
				return fmt.Errorf("group %d: negative node count", i)
			}
			counted += int64(f.Count)
			for r, q := range f.Free {
				if q.Sign() < 0 {
					return fmt.Errorf("group %d: negative free %s", i, r)
				}
			}
		}
		if g.Nodes < 0 || counted > int64(g.Nodes) {
			return fmt.Errorf("group %d: %d nodes counted free of %d", i, counted, g.Nodes)
		}
	}
	return nil
}
