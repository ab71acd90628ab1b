#!/usr/bin/env node
'use strict';
// `fleetctl` from npm: runs this platform's binary (see ../lib/launch.js).
require('../lib/launch.js')('fleetctl');
