package jobset

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateNote(t *testing.T) {
	cases := []struct {
		name string
		note string
	}{
		{"short", "Job pytorch-workers-0 is invalid"},
		{"exactly the limit", strings.Repeat("a", maxEventNote)},
		{"long ascii", strings.Repeat("a", 3*maxEventNote)},
		{"long multibyte", strings.Repeat("é", maxEventNote)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := truncateNote(tc.note)
			if len(got) > maxEventNote {
				t.Fatalf("note is %d bytes, the API accepts %d", len(got), maxEventNote)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("note was cut inside a rune: %q", got[len(got)-8:])
			}
			if len(tc.note) <= maxEventNote && got != tc.note {
				t.Fatalf("a note that fits was changed")
			}
			if len(tc.note) > maxEventNote && !strings.HasSuffix(got, "…") {
				t.Fatalf("a shortened note should say so")
			}
		})
	}
}
