package main

import (
	"context"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/dragonfly-fleet/fleet/devapi"
)

// TestMain lets the test binary serve as the fake workers run() starts
// (`coordbench worker ...`: it re-executes itself).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestRunInProcessAPI: every job is leased, dispatched to the fake workers
// (which a coordinator accepts only with AcceptNonScanningWorkers), answered
// and reported clean.
func TestRunInProcessAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := run(ctx, config{jobs: 2000, workers: 2, threads: 2, bulk: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Jobs != 2000 || res.Leases == 0 || res.JobsPerS <= 0 || res.CPUSeconds <= 0 {
		t.Errorf("result %+v", res)
	}
}

// TestRunOverHTTP: the same against devapi's synthetic queue over HTTP.
func TestRunOverHTTP(t *testing.T) {
	api, err := devapi.New(devapi.Config{Synthetic: 300, Rules: map[string]string{"b": `rule b { strings: $a = "NEVER-7f3a" condition: $a }`}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := run(ctx, config{jobs: 300, workers: 2, threads: 2, bulk: 20, api: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if res.Jobs != 300 || res.Leases == 0 {
		t.Errorf("result %+v", res)
	}
}
