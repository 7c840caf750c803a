package fleetctl

import (
	"regexp"
	"slices"
	"strings"
)

// MemberVerdict is one member's part of the hub's placement explanation.
type MemberVerdict struct {
	Member string
	Reason string
}

// memberStart matches "<member name>: " at the start of a part: member
// names are DNS labels, while a reason's own "; "-separated parts start
// with words and spaces ("heartbeat not renewed ...").
var memberStart = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?): `)

// SplitVerdicts splits the hub's placement explanation (placement.Result
// Explain: "m1: <reason>; m2: <reason>", as in the PlacementDecision's
// placement-reasons annotation) into per-member verdicts. A reason may
// itself contain "; ", so a part starts a new member only when it begins
// with "<name>: " — and, when known is not empty, only for a known member.
// Text before the first member (a note about the whole fleet) is returned
// as note.
func SplitVerdicts(explain string, known []string) (note string, verdicts []MemberVerdict) {
	if explain == "" {
		return "", nil
	}
	var notes []string
	for _, part := range strings.Split(explain, "; ") {
		if m := memberStart.FindStringSubmatch(part); m != nil && (len(known) == 0 || slices.Contains(known, m[1])) {
			verdicts = append(verdicts, MemberVerdict{Member: m[1], Reason: part[len(m[0]):]})
			continue
		}
		if n := len(verdicts); n > 0 {
			verdicts[n-1].Reason += "; " + part
		} else {
			notes = append(notes, part)
		}
	}
	return strings.Join(notes, "; "), verdicts
}
