package manager

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
)

// TLSFlags set what upstream JobSet's configuration file sets under `tls`
// (its TLSOptions feature gate, beta, on by default): the minimum TLS
// version and the TLS 1.2 cipher suites of the webhook and metrics servers.
type TLSFlags struct {
	MinVersion   string
	CipherSuites string
}

func (f *TLSFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.MinVersion, "tls-min-version", "",
		"Minimum TLS version of the webhook and metrics servers: VersionTLS12 (the default) or VersionTLS13. Needs the TLSOptions feature gate.")
	fs.StringVar(&f.CipherSuites, "tls-cipher-suites", "",
		"Comma-separated TLS 1.2 cipher suites of the webhook and metrics servers (Go's names; TLS 1.3 suites are not configurable). Default: Go's. Needs the TLSOptions feature gate.")
}

// options turns the flags into the servers' TLS options, with upstream's
// rules and messages: TLS 1.0 and 1.1 are refused, names are checked with
// component-base's lists. Neither flag set: nil.
func (f *TLSFlags) options() ([]func(*tls.Config), error) {
	if f.MinVersion == "" && f.CipherSuites == "" {
		return nil, nil
	}
	if !features.Enabled(features.TLSOptions) {
		return nil, fmt.Errorf("--tls-min-version and --tls-cipher-suites need the TLSOptions feature gate (--feature-gates=TLSOptions=true)")
	}
	var errs []string
	version := uint16(tls.VersionTLS12)
	switch v := f.MinVersion; v {
	case "":
	case "VersionTLS10", "VersionTLS11":
		errs = append(errs, fmt.Sprintf("invalid minVersion: %s is not supported. Please use VersionTLS12 or VersionTLS13", v))
	default:
		parsed, err := cliflag.TLSVersion(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("invalid minVersion: %v. Please use VersionTLS12 or VersionTLS13", err))
		}
		version = parsed
	}
	var suites []uint16
	if f.CipherSuites != "" {
		var err error
		if suites, err = cliflag.TLSCipherSuites(SplitList(f.CipherSuites)); err != nil {
			errs = append(errs, fmt.Sprintf("invalid cipher suites: %v. Please use the secure cipher names: %v", err, cliflag.PreferredTLSCipherNames()))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return []func(*tls.Config){func(c *tls.Config) {
		c.MinVersion = version
		if len(suites) > 0 {
			c.CipherSuites = suites
		}
	}}, nil
}
