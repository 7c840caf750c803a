package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// ServeWebhooks runs, until ctx ends, a manager whose webhook server listens
// where the cluster's webhook configurations (WithWebhooks) point, with the
// webhooks that setup registers. It returns once the server accepts TLS
// connections, so the first admission request does not race its start.
func (c *Cluster) ServeWebhooks(ctx context.Context, setup func(ctrl.Manager) error) error {
	wo := &c.Env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(c.Config, ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Tests may serve the same webhooks for several clusters.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		}),
	})
	if err != nil {
		return fmt.Errorf("webhook manager for %s: %w", c.Name, err)
	}
	if err := setup(mgr); err != nil {
		return err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "webhook manager for %s stopped: %v\n", c.Name, err)
		}
	}()
	addr := net.JoinHostPort(wo.LocalServingHost, strconv.Itoa(wo.LocalServingPort))
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook server of %s at %s not serving: %w", c.Name, addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
