-- The clock of the node holding KEYS[1] (a run's key): on a Redis Cluster, where a MULTI
-- may not hold TIME, the reconciler's snapshot reads the run's node's clock with this.
return redis.call('TIME')
