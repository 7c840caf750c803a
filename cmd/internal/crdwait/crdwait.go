// Package crdwait blocks a component's start until the API kinds it needs
// are served. A component installed together with its CRDs (kubectl apply
// -k, or right after `join` created them) may start before the apiserver
// serves them; exiting then turns a normal install into a CrashLoopBackOff.
package crdwait

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kwait "k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// Options tune Wait. Zero values are the defaults.
type Options struct {
	// Interval between discovery checks; default 2s.
	Interval time.Duration
	// LogEvery is how often the wait is logged again while nothing changes;
	// default 30s.
	LogEvery time.Duration
}

// Wait returns once every kind in kinds is served by the apiserver of cfg,
// or with ctx's error. Discovery errors other than "group version not
// found" are retried too: an apiserver that is still starting is the same
// situation as a CRD that is not established yet.
func Wait(ctx context.Context, log logr.Logger, cfg *rest.Config, kinds []schema.GroupVersionKind, opts Options) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	return wait(ctx, log, dc, kinds, opts)
}

// groupVersionLister is the part of discovery Wait uses.
type groupVersionLister interface {
	ServerResourcesForGroupVersion(groupVersion string) (*metav1.APIResourceList, error)
}

func wait(ctx context.Context, log logr.Logger, dc groupVersionLister, kinds []schema.GroupVersionKind, opts Options) error {
	if opts.Interval == 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.LogEvery == 0 {
		opts.LogEvery = 30 * time.Second
	}
	var (
		lastMissing []string
		lastLog     time.Time
		waited      bool
	)
	err := kwait.PollUntilContextCancel(ctx, opts.Interval, true, func(ctx context.Context) (bool, error) {
		missing, cause := Missing(dc, kinds)
		if len(missing) == 0 {
			return true, nil
		}
		if !slices.Equal(missing, lastMissing) || time.Since(lastLog) >= opts.LogEvery {
			kv := []any{"missing", strings.Join(missing, ", ")}
			if cause != nil {
				kv = append(kv, "lastError", cause.Error())
			}
			log.Info("Waiting for CRDs to be served (install them with kubectl apply --server-side -k, or join the cluster)", kv...)
			lastMissing, lastLog = missing, time.Now()
		}
		waited = true
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for CRDs %v: %w", lastMissing, err)
	}
	if waited {
		log.Info("CRDs are served")
	}
	return nil
}

// Missing returns the kinds (as Kind.group/version) that discovery does not
// list, and the last discovery error other than NotFound, if any.
func Missing(dc groupVersionLister, kinds []schema.GroupVersionKind) ([]string, error) {
	var (
		missing []string
		cause   error
	)
	served := map[schema.GroupVersion]map[string]bool{}
	for _, gvk := range kinds {
		gv := gvk.GroupVersion()
		if _, done := served[gv]; !done {
			served[gv] = map[string]bool{}
			list, err := dc.ServerResourcesForGroupVersion(gv.String())
			switch {
			case err == nil:
				for _, r := range list.APIResources {
					served[gv][r.Kind] = true
				}
			case !apierrors.IsNotFound(err):
				cause = err
			}
		}
		if !served[gv][gvk.Kind] {
			missing = append(missing, gvk.Kind+"."+gvk.Group+"/"+gvk.Version)
		}
	}
	return missing, cause
}
