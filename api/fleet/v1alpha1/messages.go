package v1alpha1

import "unicode/utf8"

// Bounds of the free text the fleet writes where users read it. They are
// the API's own limits: a longer message makes the whole write fail, and
// the user sees nothing at all.
const (
	// MaxConditionMessage is metav1.Condition's message limit (maxLength
	// 32768 in every CRD that embeds conditions).
	MaxConditionMessage = 32768
	// MaxEventNote is the events API's limit on an event's note.
	MaxEventNote = 1024
	// MaxMemberReason bounds what one member contributes to a message
	// listing members (placement verdicts, refusals quoted from an agent),
	// so a list of many members stays readable and within the limits above.
	MaxMemberReason = 256
)

// Bounded cuts s to at most n bytes, on a rune boundary, marking the cut.
func Bounded(s string, n int) string {
	const ellipsis = " …"
	if len(s) <= n {
		return s
	}
	cut := max(n-len(ellipsis), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
