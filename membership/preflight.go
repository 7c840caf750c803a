package membership

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The Kubernetes versions join accepts. The fleet is built against
// Kubernetes 1.37 (k8s.io/api v0.37); as Kubernetes' own version skew
// policy allows a kubelet three minors behind its apiserver, the fleet
// accepts apiservers down to three minors older, and a hub and a member
// at most that far apart (the hub's dispatches carry the member's JobSet
// spec, whose fields older apiservers drop).
const (
	BuiltMinor   = 37
	MaxMinorSkew = 3
	MinMinor     = BuiltMinor - MaxMinorSkew
)

// AllowLoopbackHubServerFlag is the command-line flag of
// Options.AllowLoopbackHubServer, named in the preflight's message.
const AllowLoopbackHubServerFlag = "--allow-loopback-hub-server"

// check is the cluster name's check, which Join, CreateToken and
// JoinWithToken make themselves.
func (o *Options) check() error {
	var errs []error
	if msgs := validation.IsDNS1123Label(o.ClusterName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("cluster name %q is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters): %s",
			o.ClusterName, strings.Join(msgs, "; ")))
	} else if msgs := validation.IsDNS1123Label(o.memberNamespace()); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("cluster name %q is too long: its hub namespace %s must be a DNS-1123 label: %s",
			o.ClusterName, o.memberNamespace(), strings.Join(msgs, "; ")))
	}
	return errors.Join(errs...)
}

// checkHubServer refuses a hub address on a loopback address, as the
// agent's Pods on the member would use it (the commands' preflight; a
// test, or an agent run as a local process, reaches a local hub).
func (o *Options) checkHubServer() error {
	var errs []error
	if o.HubServerURL != "" && !o.AllowLoopbackHubServer {
		if host, ok := loopbackHost(o.HubServerURL); ok {
			errs = append(errs, fmt.Errorf("hub server %s is a loopback address (%s): the agent's Pods on the member would reach themselves, not the hub. "+
				"Pass --hub-server with the address the member's Pods reach the hub at (e.g. https://hub.example.com:6443 or the hub's node IP), "+
				"or %s if the hub really runs in the member's own network namespace", o.HubServerURL, host, AllowLoopbackHubServerFlag))
		}
	}
	return errors.Join(errs...)
}

// loopbackHost reports whether server's host is a loopback address or
// localhost.
func loopbackHost(server string) (string, bool) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		u, err = url.Parse("https://" + server)
		if err != nil {
			return "", false
		}
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		return host, ip.IsLoopback()
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return host, h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// Preflight checks, before anything is written, what would make a join fail
// or leave a member that cannot work: the cluster name, a loopback hub
// address, the apiservers' versions (hub, and member when memberCfg is
// set), and the CRDs the member already serves that Join's would conflict
// with. It returns every problem found, each with what to do.
func Preflight(ctx context.Context, hubCfg, memberCfg *rest.Config, opts Options) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	errs := []error{opts.check(), opts.checkHubServer()}
	hubVersion, err := serverVersion(hubCfg)
	if err != nil {
		errs = append(errs, fmt.Errorf("hub: %w", err))
	} else {
		errs = append(errs, checkVersion("hub", hubVersion))
	}
	if memberCfg != nil {
		memberVersion, err := serverVersion(memberCfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("member: %w", err))
		} else {
			errs = append(errs, checkVersion("member", memberVersion))
			if hubVersion != nil {
				errs = append(errs, checkSkew(hubVersion, memberVersion))
			}
		}
		crds, err := opts.crds()
		errs = append(errs, err)
		if member, err := client.New(memberCfg, client.Options{}); err != nil {
			errs = append(errs, fmt.Errorf("member: %w", err))
		} else if err := checkMemberCRDs(ctx, member, crds); err != nil {
			errs = append(errs, fmt.Errorf("member: %w", err))
		}
	}
	return errors.Join(errs...)
}

func serverVersion(cfg *rest.Config) (*version.Info, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("reading the apiserver's version: %w", err)
	}
	return v, nil
}

// minor is the minor version of v ("37", or "37+" as some providers say).
func minor(v *version.Info) (int, error) {
	if v.Major != "1" {
		return 0, fmt.Errorf("unknown Kubernetes major version %q", v.Major)
	}
	m, err := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	if err != nil {
		return 0, fmt.Errorf("unknown Kubernetes minor version %q", v.Minor)
	}
	return m, nil
}

func checkVersion(which string, v *version.Info) error {
	m, err := minor(v)
	if err != nil {
		return fmt.Errorf("%s: %w", which, err)
	}
	if m < MinMinor {
		return fmt.Errorf("%s: Kubernetes %s is too old: the fleet supports 1.%d to 1.%d (it is built against 1.%d and accepts up to %d minors older)",
			which, v.GitVersion, MinMinor, BuiltMinor, BuiltMinor, MaxMinorSkew)
	}
	return nil
}

func checkSkew(hub, member *version.Info) error {
	h, errH := minor(hub)
	m, errM := minor(member)
	if errH != nil || errM != nil {
		return nil // reported by checkVersion
	}
	if d := h - m; d > MaxMinorSkew || -d > MaxMinorSkew {
		return fmt.Errorf("the hub runs Kubernetes %s and the member %s, more than %d minor versions apart: upgrade the older one first",
			hub.GitVersion, member.GitVersion, MaxMinorSkew)
	}
	return nil
}

// checkMemberCRDs refuses when a CRD of the same name as one Join installs
// already exists on the member and applying Join's would fail or lose data:
// another kind or scope under that name, or objects stored in a version
// Join's does not serve.
func checkMemberCRDs(ctx context.Context, member client.Client, crds []*unstructured.Unstructured) error {
	var errs []error
	for _, want := range crds {
		// Unstructured, so any client's scheme does.
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
		if err := member.Get(ctx, client.ObjectKey{Name: want.GetName()}, u); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("reading CRD %s: %w", want.GetName(), err)
		}
		have, ours := &apiextensionsv1.CustomResourceDefinition{}, &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, have); err != nil {
			return fmt.Errorf("decoding CRD %s: %w", want.GetName(), err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(want.Object, ours); err != nil {
			return fmt.Errorf("decoding CRD %s: %w", want.GetName(), err)
		}
		var served []string
		for _, v := range ours.Spec.Versions {
			served = append(served, v.Name)
		}
		var problems []string
		if have.Spec.Names.Kind != ours.Spec.Names.Kind || have.Spec.Scope != ours.Spec.Scope {
			problems = append(problems, fmt.Sprintf("it defines %s kind %s, the fleet's %s kind %s", have.Spec.Scope, have.Spec.Names.Kind, ours.Spec.Scope, ours.Spec.Names.Kind))
		}
		for _, v := range have.Status.StoredVersions {
			if !slices.Contains(served, v) {
				problems = append(problems, fmt.Sprintf("it has objects stored as %s, which the fleet's CRD does not serve (it serves %s)", v, strings.Join(served, ", ")))
			}
		}
		if len(problems) > 0 {
			managers := map[string]bool{}
			for _, f := range have.ManagedFields {
				managers[f.Manager] = true
			}
			errs = append(errs, fmt.Errorf("the member already has CRD %s (written by %s) that the fleet's would conflict with: %s. "+
				"Remove it (and its objects) or migrate them first; if the member runs upstream JobSet, see the README's migration steps",
				want.GetName(), strings.Join(sortedKeys(managers), ", "), strings.Join(problems, "; ")))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		return []string{"unknown"}
	}
	return keys
}
