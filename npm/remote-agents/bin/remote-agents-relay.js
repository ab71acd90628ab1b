#!/usr/bin/env node
'use strict';
// `remote-agents-relay` from npm: runs this platform's binary (see ../lib/launch.js).
require('../lib/launch.js')('remote-agents-relay');
